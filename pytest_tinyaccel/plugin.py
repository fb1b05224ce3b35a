"""pytest hooks, options and fixtures of pytest-tinyaccel (no logic lives here)."""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from . import hookspecs, report
from .baseline import BaselineError
from .cases import Case
from .config import ConfigError
from .margins import DEFAULT_MARGINS, parse_margins
from .options import OptionError, Options, check_options, check_output_path, check_space_form
from .process import share_cores
from .provenance import environment
from .session import TinyaccelSession
from .targets.base import TargetError
from .targets.registry import build_registry, configured_targets, entry_point_targets
from .views import CaseView, UpgradeView

SESSION = pytest.StashKey[TinyaccelSession]()
WORKER_KEY = "tinyaccel"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tinyaccel", "pytest-tinyaccel: hardware regression testing of small neural networks")
    group.addoption(
        "--tinyaccel-target",
        "--target",
        dest="tinyaccel_target",
        action="append",
        default=[],
        metavar="SEL",
        help="run only these modes (sw_emu, hw_emu, hw), targets, or target:mode pairs; "
        "repeat or comma-separate (default: every mode of every target)",
    )
    group.addoption(
        "--tinyaccel-dtype",
        dest="tinyaccel_dtype",
        action="append",
        default=[],
        metavar="DTYPE",
        help="run only these dtypes (fp32, int8); repeat or comma-separate",
    )
    group.addoption(
        "--tinyaccel-update-golden",
        dest="tinyaccel_update_golden",
        action="store_true",
        help="(re)write the golden files of every model whose tests run, then check against them",
    )
    group.addoption(
        "--tinyaccel-report",
        dest="tinyaccel_report",
        action="append",
        default=[],
        metavar="PATH",
        help="write the profiling table to PATH; format by suffix: .md, .json, .csv, or .html (a page with "
        "per-layer charts, baseline changes and failed checks; charts need the report extra) (repeatable)",
    )
    group.addoption(
        "--tinyaccel-samples",
        dest="tinyaccel_samples",
        type=int,
        default=None,
        metavar="N",
        help="accuracy on the first N test samples (default: the manifest's `samples`, 1000)",
    )
    group.addoption(
        "--tinyaccel-trace",
        dest="tinyaccel_trace",
        default=None,
        metavar="DIR",
        help="write a Chrome trace (Perfetto-viewable) per case with one event per kernel/layer, "
        "in simulated microseconds (cycles / clock; the cycles in each event's args), for targets that "
        "report per-layer timing",
    )
    group.addoption(
        "--tinyaccel-loadgen",
        dest="tinyaccel_loadgen",
        action="store_true",
        help="measured targets (cpu, command targets in hw mode): latency = MLPerf LoadGen SingleStream "
        "p90, throughput = Offline samples/s (needs the loadgen extra)",
    )
    group.addoption(
        "--tinyaccel-models",
        dest="tinyaccel_models",
        default=None,
        metavar="DIR",
        help="folder of model folders (default: ini tinyaccel_models, 'models')",
    )
    group.addoption(
        "--tinyaccel-golden",
        dest="tinyaccel_golden",
        default=None,
        metavar="DIR",
        help="folder of golden folders (default: ini tinyaccel_golden, 'golden')",
    )
    group.addoption(
        "--tinyaccel-baseline",
        dest="tinyaccel_baseline",
        default=None,
        metavar="PATH",
        help="gate on this saved profile: test_baseline fails when latency, throughput or accuracy "
        "is worse than it by more than the allowed margin",
    )
    group.addoption(
        "--tinyaccel-save-baseline",
        dest="tinyaccel_save_baseline",
        default=None,
        metavar="PATH",
        help="save this run's profile (JSON, with machine and versions) as a baseline",
    )
    group.addoption(
        "--tinyaccel-max-regression",
        dest="tinyaccel_max_regression",
        default=None,
        metavar="SPEC",
        help="allowed regression per metric, e.g. 'cycles=0%%,ns=10%%,throughput=10%%,accuracy=0.5' "
        "(defaults cycles=0%%, ns=25%%, throughput=25%%, accuracy=0.5 points)",
    )
    group.addoption(
        "--tinyaccel-upgrade-tolerance",
        dest="tinyaccel_upgrade_tolerance",
        type=float,
        default=None,
        metavar="P",
        help="upgrade review: allowed Top-5 probability change (default 0.01 absolute)",
    )
    parser.addini(
        "tinyaccel_max_regression", "allowed regression per metric (see --tinyaccel-max-regression)", default=""
    )
    group.addoption(
        "--tinyaccel-executor",
        dest="tinyaccel_executor",
        default=None,
        metavar="WHERE",
        help="where builds and runs happen: local (default), processes[:N] (a local pool) or dask://HOST:PORT "
        "(a Dask scheduler); with a pool or cluster every case is submitted after collection",
    )
    parser.addini("tinyaccel_executor", "where builds and runs happen (see --tinyaccel-executor)", default="local")
    parser.addini("tinyaccel_upgrade_tolerance", "upgrade review Top-5 probability tolerance", default="0.01")
    parser.addini("tinyaccel_models", "folder of model folders, relative to the rootdir", default="models")
    parser.addini("tinyaccel_golden", "folder of golden folders, relative to the rootdir", default="golden")


def _split(values: list[str]) -> tuple[str, ...]:
    return tuple(v for value in values for v in value.split(",") if v)


def _target_settings(root: Path) -> dict[str, dict[str, Any]]:
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return {}
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise pytest.UsageError(f"{pyproject}: {exc}") from exc
    return data.get("tool", {}).get("tinyaccel", {}).get("targets", {})


def _path(config: pytest.Config, option: str) -> Path:
    value = config.getoption(option)
    return Path(value).resolve() if value else config.rootpath / config.getini(option)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    share_cores(getattr(config, "workerinput", {}).get("workercount"))
    candidates: list[Any] = []
    try:
        configured, settings = configured_targets(_target_settings(config.rootpath), config.rootpath)
        candidates += entry_point_targets()
        candidates += configured  # `kind = "command"` tables: after shipped targets, before conftest hooks
        for found in config.hook.pytest_tinyaccel_targets(config=config):
            candidates += list(found)
        registry = build_registry(candidates, settings)
    except (TargetError, ConfigError) as exc:
        raise pytest.UsageError(str(exc)) from exc
    for name in registry:
        config.addinivalue_line("markers", f"{name}: tinyaccel cases that run on the {name} target")
    config.addinivalue_line("markers", "tinyaccel_task(task): parametrize only over models of this task")
    config.addinivalue_line("markers", "tinyaccel_baseline: parametrize only when --tinyaccel-baseline is given")
    config.addinivalue_line("markers", "xdist_group(name): keep a model's cases on one pytest-xdist worker")
    try:
        config.stash[SESSION] = TinyaccelSession(_options(config), registry)
    except (BaselineError, ConfigError, OptionError) as exc:
        raise pytest.UsageError(str(exc)) from exc


def _options(config: pytest.Config) -> Options:
    """The run's options from the command line and ini, checked (OptionError says what is wrong)."""
    params = config.invocation_params
    check_space_form(params.args, params.dir, bool(config.getoption("rootdir", None)))
    for path in config.getoption("tinyaccel_report"):
        check_output_path("--tinyaccel-report", Path(path), report.SUFFIXES)
    save = config.getoption("tinyaccel_save_baseline")
    if save:
        check_output_path("--tinyaccel-save-baseline", Path(save))
    margins = dict(DEFAULT_MARGINS)
    margins.update(parse_margins(config.getini("tinyaccel_max_regression"), "ini tinyaccel_max_regression"))
    margins.update(parse_margins(config.getoption("tinyaccel_max_regression") or "", "--tinyaccel-max-regression"))
    upgrade = config.getoption("tinyaccel_upgrade_tolerance")
    baseline, trace = config.getoption("tinyaccel_baseline"), config.getoption("tinyaccel_trace")
    options = Options(
        models_dir=_path(config, "tinyaccel_models"),
        golden_dir=_path(config, "tinyaccel_golden"),
        cache_dir=_cache_dir(config),
        selection=_split(config.getoption("tinyaccel_target")),
        dtypes=_split(config.getoption("tinyaccel_dtype")),
        samples=config.getoption("tinyaccel_samples"),
        update_golden=config.getoption("tinyaccel_update_golden"),
        baseline=Path(baseline).resolve() if baseline else None,
        margins=margins,
        upgrade_tolerance=float(config.getini("tinyaccel_upgrade_tolerance")) if upgrade is None else upgrade,
        trace_dir=Path(trace).resolve() if trace else None,
        loadgen=config.getoption("tinyaccel_loadgen"),
        # xdist workers run locally: each already is a separate process, and prefetching there would
        # submit every case on every worker.
        executor="local"
        if hasattr(config, "workerinput")
        else config.getoption("tinyaccel_executor") or config.getini("tinyaccel_executor"),
        path_args=tuple(
            f"--{name.replace('_', '-')}={config.getoption(name)}"
            for name in ("tinyaccel_models", "tinyaccel_golden")
            if config.getoption(name)
        ),
    )
    models_explicit = bool(config.getoption("tinyaccel_models")) or config.getini("tinyaccel_models") != "models"
    check_options(options, models_explicit)
    return options


def _cache_dir(config: pytest.Config) -> Path:
    """pytest's cache folder, or (like pytest itself, which only warns) a temporary one when it
    cannot be written (read-only, or a file in its place)."""
    provider = getattr(config, "cache", None)  # absent with -p no:cacheprovider
    try:
        path = provider.mkdir("tinyaccel") if provider is not None else config.rootpath / ".tinyaccel-cache"
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return Path(path)
    except OSError:
        pass
    fallback = Path(tempfile.mkdtemp(prefix="tinyaccel-cache-"))
    config.issue_config_time_warning(
        pytest.PytestConfigWarning(f"tinyaccel: the build cache folder is not writable; using {fallback} for this run"),
        stacklevel=2,
    )
    return fallback


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = config.stash[SESSION]
    return session.header_lines()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session = metafunc.config.stash[SESSION]
    if "tinyaccel_upgrade" in metafunc.fixturenames:
        try:
            pairs = session.goldens.upgrade_cases(session.models)
        except ConfigError as exc:
            raise pytest.Collector.CollectError(f"malformed model manifest: {exc}") from exc
        params = [pytest.param((m, d), id=f"{m.name}-{d}", marks=pytest.mark.xdist_group(m.name)) for m, d in pairs]
        metafunc.parametrize(
            "tinyaccel_upgrade",
            params
            or [
                pytest.param(
                    None,
                    id="none",
                    marks=pytest.mark.skip(
                        reason="every golden was made by an ONNX Runtime like the installed one (same version, "
                        "same int8 arithmetic): nothing to review"
                    ),
                )
            ],
        )
    if "tinyaccel_case" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("tinyaccel_task")
    task = marker.args[0] if marker else None
    try:
        cases = [
            (case, reason or session.registry[case.target].case_availability(case.model, case.dtype, case.mode))
            for case, reason in session.cases(task)
        ]
    except ConfigError as exc:
        raise pytest.Collector.CollectError(f"malformed model manifest: {exc}") from exc
    check = metafunc.definition.name.removeprefix("test_")
    params = [pytest.param(case, id=case.id, marks=_marks(case, reason, check)) for case, reason in cases]
    if metafunc.definition.get_closest_marker("tinyaccel_baseline") and session.baseline is None:
        params = [
            pytest.param(
                None,
                id="off",
                marks=pytest.mark.skip(
                    reason="pre-merge gating is off: pass --tinyaccel-baseline PATH (saved with "
                    "--tinyaccel-save-baseline)"
                ),
            )
        ]
    if not params:
        params = [pytest.param(None, id="no-cases", marks=pytest.mark.skip(reason=session.no_cases_reason(task)))]
    metafunc.parametrize("tinyaccel_case", params)


def _marks(case: Case, skip: str | None, check: str) -> list[pytest.MarkDecorator]:
    """The target's marker, the xdist group, and a skip or a strict expected failure from the manifest."""
    marks = [getattr(pytest.mark, case.target), pytest.mark.xdist_group(case.model.name)]
    xfail = case.model.xfail_reason(case.target, case.dtype, check)
    if skip:
        marks.append(pytest.mark.skip(reason=skip))
    elif xfail:
        marks.append(pytest.mark.xfail(strict=True, reason=f"{case.model.manifest_path.name}: {xfail}"))
    return marks


@pytest.fixture
def tinyaccel(request: pytest.FixtureRequest, tinyaccel_case: Case) -> CaseView:
    """The current case: its outcome (outputs, perf), golden, and the standard checks."""
    return CaseView(request.config.stash[SESSION], tinyaccel_case, request.node.nodeid)


@pytest.fixture
def tinyaccel_review(request: pytest.FixtureRequest, tinyaccel_upgrade: tuple) -> UpgradeView:
    """One model x dtype whose golden an older ONNX Runtime made: the upgrade review."""
    model, dtype = tinyaccel_upgrade
    return UpgradeView(request.config.stash[SESSION], model, dtype, request.node.nodeid)


def pytest_collection_finish(session: pytest.Session) -> None:
    """With a pool or a cluster: submit every selected, runnable case now."""
    state = session.config.stash.get(SESSION, None)
    if state is None or state.remote is None:
        return
    cases: dict[str, Case] = {}
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("tinyaccel_case") if callspec else None
        if isinstance(case, Case) and not item.get_closest_marker("skip"):
            cases.setdefault(case.id, case)
    state.prefetch(list(cases.values()))


def pytest_unconfigure(config: pytest.Config) -> None:
    """At the end, and after Ctrl-C: cancel what was submitted to a pool or cluster and not started."""
    state = config.stash.get(SESSION, None)
    if state is not None:
        state.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(SESSION, None)
    if state is None:
        return
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput[WORKER_KEY] = state.export_state()
        return
    paths = list(session.config.getoption("tinyaccel_report"))
    save = session.config.getoption("tinyaccel_save_baseline")
    if save:
        paths.append(save if save.endswith(".json") else save + ".json")
    env = environment(session.config.rootpath) if paths else {}
    for path in paths:
        state.write_report(Path(path), env)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """With pytest-html: the case's profile line and per-layer charts as an extra of its first test."""
    test_report = yield
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("tinyaccel_case") if callspec else None
    if test_report.when == "call" and isinstance(case, Case) and item.config.pluginmanager.hasplugin("html"):
        fragment = item.config.stash[SESSION].html_extra(case)
        if fragment:
            from pytest_html import extras

            test_report.extras = [*getattr(test_report, "extras", []), extras.html(fragment)]
    return test_report


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix: list[str], summary: list[str], postfix: list[str], session: Any) -> None:
    """pytest-html: the profiling tables under its summary."""
    state = session.config.stash.get(SESSION, None)
    if state is not None and state.rows:
        postfix.append(state.html_summary())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist controller: gather the rows a worker produced."""
    state = getattr(node, "workeroutput", {}).get(WORKER_KEY)
    if state:
        node.config.stash[SESSION].merge_state(state)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(SESSION, None)
    if state is None or hasattr(config, "workeroutput"):
        return
    lines = state.summary_lines(config.getoption("tinyaccel_report"))
    if lines:
        terminalreporter.write_sep("=", "tinyaccel profile")
        for line in lines:
            terminalreporter.write_line(line)
