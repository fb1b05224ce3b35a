"""pytest hooks, options and fixtures of pytest-tinyaccel (no logic lives here)."""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from . import hookspecs, options, output, views
from .baseline import BaselineError
from .cases import BrokenCase, Case
from .config import ConfigError
from .margins import DEFAULT_MARGINS
from .options import OptionError, Options, check_options, check_output_path, check_space_form
from .process import hold_startup_objects, release_startup_objects, share_cores
from .record import RunRecord
from .session import TinyaccelSession
from .targets.base import TargetError
from .targets.registry import build_registry, configured_targets, entry_point_targets
from .views import CaseView, UpgradeReviewView

SESSION = pytest.StashKey[TinyaccelSession]()
HELD = pytest.StashKey[bool]()
HTML_SHOWN = pytest.StashKey[set[str]]()
WORKER_KEY = "tinyaccel"
T = TypeVar("T")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    """The options, grouped by concern; values are checked as pytest parses them (options.py)."""
    group = parser.getgroup("tinyaccel", "pytest-tinyaccel: which cases run")
    group.addoption(
        "--tinyaccel-target",
        "--target",
        dest="tinyaccel_target",
        action="append",
        default=[],
        type=options.tokens,
        metavar="SEL",
        help="run only these modes (sw_emu, hw_emu, hw), targets, or target:mode pairs; "
        "repeat or comma-separate (default: every mode of every target)",
    )
    group.addoption(
        "--tinyaccel-dtype",
        dest="tinyaccel_dtype",
        action="append",
        default=[],
        type=options.dtypes,
        metavar="DTYPE",
        help="run only these dtypes (fp32, int8); repeat or comma-separate",
    )
    group.addoption(
        "--tinyaccel-models",
        dest="tinyaccel_models",
        metavar="DIR",
        help="folder of model folders (default: ini tinyaccel_models, 'models')",
    )
    parser.addini("tinyaccel_models", "folder of model folders, relative to the rootdir", default="models")

    group = parser.getgroup("tinyaccel goldens", "pytest-tinyaccel: goldens and the upgrade review")
    group.addoption(
        "--tinyaccel-golden",
        dest="tinyaccel_golden",
        metavar="DIR",
        help="folder of golden folders (default: ini tinyaccel_golden, 'golden')",
    )
    group.addoption(
        "--tinyaccel-update-golden",
        dest="tinyaccel_update_golden",
        action="store_true",
        help="(re)write the golden files of every model whose tests run, then check against them",
    )
    group.addoption(
        "--tinyaccel-upgrade-tolerance",
        dest="tinyaccel_upgrade_tolerance",
        type=options.tolerance,
        metavar="P",
        help="upgrade review: allowed Top-5 probability change (default: ini tinyaccel_upgrade_tolerance, 0.01)",
    )
    parser.addini("tinyaccel_golden", "folder of golden folders, relative to the rootdir", default="golden")
    parser.addini("tinyaccel_upgrade_tolerance", "upgrade review Top-5 probability tolerance", default="0.01")

    group = parser.getgroup("tinyaccel running", "pytest-tinyaccel: how and where cases run")
    group.addoption(
        "--tinyaccel-samples",
        dest="tinyaccel_samples",
        type=options.positive_int,
        metavar="N",
        help="accuracy on the first N test samples (default: the manifest's `samples`, 1000)",
    )
    group.addoption(
        "--tinyaccel-executor",
        dest="tinyaccel_executor",
        type=options.executor,
        metavar="WHERE",
        help="where builds and runs happen: local (default), processes[:N] (a local pool) or dask://HOST:PORT "
        "(a Dask scheduler); with a pool or cluster every case is submitted after collection",
    )
    group.addoption(
        "--tinyaccel-loadgen",
        dest="tinyaccel_loadgen",
        action="store_true",
        help="measured targets (cpu, command targets in hw mode): latency = MLPerf LoadGen SingleStream "
        "p90, throughput = Offline samples/s (needs the loadgen extra)",
    )
    group.addoption(
        "--tinyaccel-strict-support",
        dest="tinyaccel_strict_support",
        action="store_true",
        help="a model a target cannot run (unsupported ops or types) fails its cases instead of skipping them",
    )
    parser.addini("tinyaccel_executor", "where builds and runs happen (see --tinyaccel-executor)", default="local")
    parser.addini(
        "tinyaccel_strict_support",
        "fail, not skip, the cases a target cannot run (see above)",
        type="bool",
        default=False,
    )

    group = parser.getgroup("tinyaccel reports", "pytest-tinyaccel: reports, traces and pre-merge gating")
    group.addoption(
        "--tinyaccel-report",
        dest="tinyaccel_report",
        action="append",
        default=[],
        type=options.report_path,
        metavar="PATH",
        help="write the run record to PATH; format by suffix: .md, .json, .csv, or .html (a page with "
        "per-layer charts, baseline changes and failed checks; charts need the report extra) (repeatable)",
    )
    group.addoption(
        "--tinyaccel-trace",
        dest="tinyaccel_trace",
        metavar="DIR",
        help="write a Chrome trace (Perfetto-viewable) per case with one event per kernel/layer, "
        "in simulated microseconds (cycles / clock; the cycles in each event's args), for targets that "
        "report per-layer timing",
    )
    group.addoption(
        "--tinyaccel-save-baseline",
        dest="tinyaccel_save_baseline",
        metavar="PATH",
        help="save this run's profile (JSON, with machine and versions) as a baseline",
    )
    group.addoption(
        "--tinyaccel-baseline",
        dest="tinyaccel_baseline",
        metavar="PATH",
        help="gate on this saved profile: test_baseline fails when latency, throughput or accuracy "
        "is worse than it by more than the allowed margin",
    )
    group.addoption(
        "--tinyaccel-max-regression",
        dest="tinyaccel_max_regression",
        type=options.margins,
        metavar="SPEC",
        help="allowed regression per metric, e.g. 'cycles=0%%,ns=10%%,throughput=10%%,accuracy=0.5,sqnr=1dB' "
        "(defaults cycles=0%%, ns=25%%, throughput=25%%, accuracy=0.5 points; sqnr only when given)",
    )
    parser.addini(
        "tinyaccel_max_regression", "allowed regression per metric (see --tinyaccel-max-regression)", default=""
    )


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
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(RecordReports(config, config.stash[SESSION]), "tinyaccel-record")
    config.stash[HELD] = hold_startup_objects()


def _options(config: pytest.Config) -> Options:
    """The run's options from the command line and ini, checked (OptionError says what is wrong)."""
    params = config.invocation_params
    check_space_form(params.args, params.dir, bool(config.getoption("rootdir", None)))
    for path in config.getoption("tinyaccel_report"):
        check_output_path("--tinyaccel-report", Path(path))
    save = config.getoption("tinyaccel_save_baseline")
    if save:
        check_output_path("--tinyaccel-save-baseline", Path(save))
    margins = dict(DEFAULT_MARGINS)
    margins.update(_ini(config, "tinyaccel_max_regression", options.margins))
    margins.update(config.getoption("tinyaccel_max_regression") or {})
    upgrade = config.getoption("tinyaccel_upgrade_tolerance")
    executor = config.getoption("tinyaccel_executor") or _ini(config, "tinyaccel_executor", options.executor)
    baseline, trace = config.getoption("tinyaccel_baseline"), config.getoption("tinyaccel_trace")
    chosen = Options(
        models_dir=_path(config, "tinyaccel_models"),
        golden_dir=_path(config, "tinyaccel_golden"),
        cache_dir=_cache_dir(config),
        selection=tuple(t for found in config.getoption("tinyaccel_target") for t in found),
        dtypes=tuple(d for found in config.getoption("tinyaccel_dtype") for d in found),
        samples=config.getoption("tinyaccel_samples"),
        update_golden=config.getoption("tinyaccel_update_golden"),
        baseline=Path(baseline).resolve() if baseline else None,
        margins=margins,
        upgrade_tolerance=_ini(config, "tinyaccel_upgrade_tolerance", options.tolerance)
        if upgrade is None
        else upgrade,
        trace_dir=Path(trace).resolve() if trace else None,
        loadgen=config.getoption("tinyaccel_loadgen"),
        strict_support=config.getoption("tinyaccel_strict_support") or bool(config.getini("tinyaccel_strict_support")),
        # xdist workers run locally: each already is a separate process, and prefetching there would
        # submit every case on every worker.
        executor="local" if hasattr(config, "workerinput") else executor,
        path_args=tuple(
            f"--{name.replace('_', '-')}={config.getoption(name)}"
            for name in ("tinyaccel_models", "tinyaccel_golden")
            if config.getoption(name)
        ),
    )
    models_explicit = bool(config.getoption("tinyaccel_models")) or config.getini("tinyaccel_models") != "models"
    check_options(chosen, models_explicit)
    return chosen


def _ini(config: pytest.Config, name: str, parse: Callable[[str], T]) -> T:
    """An ini value, checked by the parser of its command-line option."""
    return options.ini_value(name, str(config.getini(name)), parse)


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
    return output.header_lines(config.stash[SESSION])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session = metafunc.config.stash[SESSION]
    if views.REVIEW_PARAM in metafunc.fixturenames:
        try:
            pairs = session.context.goldens.upgrade_cases(session.models)
        except ConfigError as exc:
            raise pytest.Collector.CollectError(f"malformed model manifest: {exc}") from exc
        params = [pytest.param((m, d), id=f"{m.name}-{d}", marks=pytest.mark.xdist_group(m.name)) for m, d in pairs]
        metafunc.parametrize(
            views.REVIEW_PARAM,
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
    if views.CASE_PARAM not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("tinyaccel_task")
    task = marker.args[0] if marker else None
    try:
        cases = session.cases(task)
    except ConfigError as exc:
        raise pytest.Collector.CollectError(f"malformed model manifest: {exc}") from exc
    check = metafunc.definition.name.removeprefix("test_")
    params = [pytest.param(case, id=case.id, marks=_marks(case, reason, check)) for case, reason in cases]
    if metafunc.definition.get_closest_marker("tinyaccel_baseline") and session.context.baseline is None:
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
        reason = output.no_cases_reason(session, task)
        params = [pytest.param(None, id="no-cases", marks=pytest.mark.skip(reason=reason))]
    metafunc.parametrize(views.CASE_PARAM, params)


def _marks(case: Case | BrokenCase, skip: str | None, check: str) -> list[pytest.MarkDecorator]:
    """The target's marker, the xdist group, and a skip or a strict expected failure from the manifest."""
    if isinstance(case, BrokenCase):
        marks = [getattr(pytest.mark, case.target), pytest.mark.xdist_group(case.broken.folder)]
        return [*marks, pytest.mark.skip(reason=skip)] if skip else marks
    marks = [getattr(pytest.mark, case.target), pytest.mark.xdist_group(case.model.name)]
    xfail = case.model.xfail_reason(case.target, case.dtype, check)
    if skip:
        marks.append(pytest.mark.skip(reason=skip))
    elif xfail:
        marks.append(pytest.mark.xfail(strict=True, reason=f"{case.model.manifest_path.name}: {xfail}"))
    return marks


@pytest.fixture
def tinyaccel(request: pytest.FixtureRequest, tinyaccel_case: Case) -> CaseView:
    """One model x target x mode x dtype (a test per case, ids like ic-aie-hw_emu-int8):
    `.case`, `.outcome` (outputs, `perf`, quality, profile `row`; built and run once),
    `.golden`, and the standard checks (`check_golden()`, ...). A case that could not run
    skips your test with the case's reason (its standard checks fail). Example:
        from pytest_tinyaccel.suite import *  # the standard checks, one test per case
        def test_fits_latency_budget(tinyaccel):
            perf = tinyaccel.outcome.perf
            assert perf.latency_ns is None or perf.latency_ns < 2e6
    """
    return views.case_view(request.config.stash[SESSION], tinyaccel_case, request.node.nodeid, request.function)


@pytest.fixture
def tinyaccel_upgrade_review(request: pytest.FixtureRequest, tinyaccel_upgrade_review_case: tuple) -> UpgradeReviewView:
    """One model x dtype whose golden an older ONNX Runtime made (or made with other int8
    arithmetic): `.check()` compares the stored golden with the installed runtime's outputs
    (parametrized only when there is something to review). Example:
        def test_upgrade_review(tinyaccel_upgrade_review):
            tinyaccel_upgrade_review.check()
    """
    model, dtype = tinyaccel_upgrade_review_case
    return UpgradeReviewView(request.config.stash[SESSION], model, dtype, request.node.nodeid)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note which cases have standard checks; with a pool or a cluster, submit every runnable case now."""
    state = session.config.stash.get(SESSION, None)
    if state is not None:
        views.collected(state, session.items)


@pytest.hookimpl(tryfirst=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """At the end, and after Ctrl-C: cancel what was submitted to a pool or cluster and not started; give
    the start-up objects back to the garbage collector before pytest's own last collection."""
    release_startup_objects(config.stash.get(HELD, False))
    state = config.stash.get(SESSION, None)
    if state is not None:
        state.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Build the run record; an xdist worker sends it to the controller, which writes every report."""
    state = session.config.stash.get(SESSION, None)
    if state is None:
        return
    record = views.finish(session.config, state)
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput[WORKER_KEY] = record.to_dict()
        return
    paths = list(session.config.getoption("tinyaccel_report"))
    save = session.config.getoption("tinyaccel_save_baseline")
    if save:
        paths.append(save if save.endswith(".json") else save + ".json")
    env: dict[str, Any] = {}
    if paths:
        from .provenance import environment  # machine and versions: only when a report is written

        env = environment(session.config.rootpath)
    for path in paths:
        output.write_report(state, record, Path(path), env)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Tag the reports of the plugin's tests for the run record; when pytest-html writes a report
    (--html), the case's profile line and per-layer charts as an extra of its first test (only then:
    the charts cost about 0.3 s a case, and pytest-html, once installed, is loaded in every run)."""
    test_report = yield
    views.tag(item, test_report)
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get(views.CASE_PARAM) if callspec else None
    if test_report.when == "call" and isinstance(case, Case) and item.config.getoption("htmlpath", None):
        shown = item.config.stash.setdefault(HTML_SHOWN, set())
        fragment = output.html_extra(item.config.stash[SESSION], case, shown)
        if fragment:
            from pytest_html import extras

            test_report.extras = [*getattr(test_report, "extras", []), extras.html(fragment)]
    return test_report


class RecordReports:
    """Every verdict pytest counts goes into the run record: registered where the terminal summary is
    made (not on xdist workers, whose reports the controller sees); a plugin object because
    pytest_runtest_logreport gets no config."""

    def __init__(self, config: pytest.Config, session: TinyaccelSession) -> None:
        self.config, self.session = config, session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        views.log(self.config, self.session, report)


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix: list[str], summary: list[str], postfix: list[str], session: Any) -> None:
    """pytest-html: the profiling tables under its summary."""
    state = session.config.stash.get(SESSION, None)
    if state is not None and state.record.rows:
        postfix.append(output.html_summary(state))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist controller: merge the record a worker built."""
    state = getattr(node, "workeroutput", {}).get(WORKER_KEY)
    if state:
        node.config.stash[SESSION].record.merge(RunRecord.from_dict(state))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(SESSION, None)
    if state is None or hasattr(config, "workeroutput"):
        return
    lines = output.summary_lines(state, state.record, config.getoption("tinyaccel_report"))
    if lines:
        terminalreporter.write_sep("=", "tinyaccel profile")
        for line in lines:
            terminalreporter.write_line(line)
