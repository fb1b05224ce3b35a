"""The HTML profile page (`--tinyaccel-report profile.html`): what it shows, that it
loads nothing and escapes everything, that a parallel run writes the same page, the
pytest-html extras, traces in simulated microseconds, and, for real, that headless
Chromium renders it without a console error with a chart for every hw_emu case."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import select
import shutil
import sys
import time
from html import escape, unescape
from pathlib import Path
from typing import Any

import pytest
from helpers import Project

from pytest_tinyaccel.baseline import compare
from pytest_tinyaccel.costmodel import zigzag_unavailable
from pytest_tinyaccel.costmodel.trace import trace_events
from pytest_tinyaccel.perf import LayerPerf, Perf
from pytest_tinyaccel.record import Finding, ProfileRow, RunRecord, Top5Sample
from pytest_tinyaccel.report_html import PageData, render_page
from pytest_tinyaccel.report_html.charts import INSTALL_HINT, is_dataflow, layer_chart, timeline_chart

needs_zigzag = pytest.mark.skipif(zigzag_unavailable() is not None, reason=str(zigzag_unavailable()))
needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed (report extra)"
)

# A target with a per-kernel dataflow schedule; its sw_emu mode is functionally wrong
# (outputs reversed), so the golden and Top-5 checks fail and the page shows why.
FLOW_TARGET = """
from pytest_tinyaccel import LayerPerf, Perf, RunResult, Target
from pytest_tinyaccel.runtime import create_session, run_session

class FlowTarget(Target):
    name = "flow"
    modes = ("sw_emu", "hw_emu")
    resource_columns = ("Kernels",)

    def run(self, build, inputs):
        outputs = run_session(create_session(build.onnx_path), inputs)
        if build.mode == "sw_emu":
            outputs = {k: v[:, ::-1].copy() for k, v in outputs.items()}
        layers = [LayerPerf(f"k{i}", "Conv" if i % 2 else "Gemm", cycles=100.0 * (i + 1), start=50.0 * i,
                            extra={"tile": i, "ideal_cycles": 60.0 * (i + 1)}) for i in range(4)]
        return RunResult(outputs, Perf(simulator="flowsim <1.0>", cycles=450.0, clock_hz=1e9, latency_ns=450.0,
                                       throughput=2.5e6, resources={"Kernels": 4}, layers=layers,
                                       extra={"ideal_cycles": 300.0}))

    def localize(self, build, inputs, tolerance, layers):
        return "first diverging layer: node 'k3' (Conv), tensor 'y': 10 elements differ"

def pytest_tinyaccel_targets(config):
    return [FlowTarget]
"""


# --------------------------------------------------------------------------- the page, unit by unit


def _row(model: str = "ic", mode: str = "hw_emu", layers: list[LayerPerf] | None = None, **perf: Any) -> ProfileRow:
    figures = {"cycles": 1000.0, "clock_hz": 1e9, "latency_ns": 1000.0, "throughput": 1e6} | perf
    return ProfileRow(
        model,
        "aie",
        mode,
        "int8",
        "Image Classification",
        "ResNet",
        "https://example.org/resnet",
        "top1",
        0.97,
        Perf("sim", resources={"Kernels": 2}, layers=layers or [], **figures),
        ("Kernels",),
        accuracy=0.99,
        samples=540,
    )


def _page(rows: list[ProfileRow], environment: dict[str, Any], findings: list[Finding] = (), **more: Any) -> PageData:
    """A page of these rows (no tests ran: no statuses) and findings."""
    record = RunRecord(rows={r.case_id: r for r in rows}, findings=list(findings))
    return PageData(record, environment, **more)


def _dataflow() -> list[LayerPerf]:
    return [
        LayerPerf("conv[0]", "Conv", cycles=600.0, start=0.0, extra={"tile": 0, "ideal_cycles": 400.0}),
        LayerPerf("conv[1]", "Conv", cycles=600.0, start=0.0, extra={"tile": 1, "ideal_cycles": 400.0}),
        LayerPerf("fc", "Gemm", cycles=400.0, start=600.0, extra={"tile": 2}),
    ]


def test_page_escapes_every_text_and_loads_nothing() -> None:
    row = _row(layers=_dataflow())
    row.use_case, row.architecture, row.link = "<script>alert(1)</script>", "Res<b>Net</b>", "javascript:alert(1)"
    row.perf.simulator = 'sim "quoted" <i>'
    html = render_page(_page([row], {"git_commit": "<abc>", "python": "3.11"}), Path("out/profile.html"))
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "javascript:" not in html and "Res&lt;b&gt;Net&lt;/b&gt;" in html
    assert "&lt;abc&gt;" in html
    assert 'http-equiv="Content-Security-Policy" content="default-src \'none\';' in html
    assert not re.search(r"\ssrc=", html)  # nothing to load: CSS and charts are inline
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', html))


def test_profile_table_has_the_markdown_columns_and_links_each_case_to_its_charts() -> None:
    rows = [_row(layers=_dataflow()), _row(mode="sw_emu")]
    html = render_page(_page(rows, {}), Path("profile.html"))
    for header in ("Use Case", "Dtype", "Latency (cycles or ns)", "Resource Utilization (Kernels)", "Quality Target"):
        assert f"<th>{header}</th>" in html
    assert html.count('<table class="profile">') == 2  # one per target and mode
    assert '<a href="#case-ic-aie-hw_emu-int8">int8</a>' in html
    assert 'id="case-ic-aie-sw_emu-int8"' not in html  # a functional run has no timing to chart
    assert "1000 cycles" in html and "99.4%" not in html and "99.0% (Top 1, n=540)" in html


@needs_matplotlib
def test_hw_emu_case_gets_a_layer_chart_with_the_bound_and_a_timeline_when_dataflow() -> None:
    html = render_page(_page([_row(layers=_dataflow(), extra={"ideal_cycles": 800.0})], {}), Path("p.html"))
    case = html[html.index('id="case-ic-aie-hw_emu-int8"') :]
    assert case.count('<figure class="chart"') == 2 and 'data-kind="timeline"' in case
    assert "800 cycles (ideal); the prediction is 1.25× the bound" in case
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html  # inline SVG elements, no prolog


@needs_matplotlib
def test_charts_are_byte_stable_and_only_dataflow_gets_a_timeline() -> None:
    sequential = [LayerPerf(f"l{i}", "Conv", cycles=100.0, start=100.0 * i) for i in range(3)]
    assert is_dataflow(Perf("s", layers=_dataflow())) and not is_dataflow(Perf("s", layers=sequential))
    assert timeline_chart(_row(layers=sequential)) is None
    row = _row(layers=_dataflow())
    assert layer_chart(row) == layer_chart(row)  # no date, no random ids: serial and parallel pages match
    assert layer_chart(_row(layers=[])) is None


def test_without_matplotlib_the_page_keeps_its_tables_and_says_how_to_get_charts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    html = render_page(_page([_row(layers=_dataflow())], {}), Path("p.html"))
    assert '<table class="profile">' in html and "<svg" not in html
    assert escape(INSTALL_HINT) in html


def test_baseline_changes_every_metric_with_regressions_highlighted() -> None:
    base, now = _row(), _row(cycles=1100.0, throughput=1.2e6)
    now.perf.resources = {"Kernels": 3}
    changes = compare(now, base, {"cycles": 0.0, "ns": 25.0, "throughput": 25.0, "accuracy": 0.5})
    data = _page(
        [now, _row(model="kws")],
        {},
        baseline_path=Path("base.json"),
        baseline={base.case_id: base},
        changes={now.case_id: changes},
    )
    html = render_page(data, Path("p.html"))
    section = html[html.index('<section id="baseline">') : html.index("</section>", html.index('id="baseline"'))]
    assert '<tr class="bad"><td>ic-aie-hw_emu-int8</td><td>cycles</td>' in section and "REGRESSED" in section
    assert '<tr class="good"><td>ic-aie-hw_emu-int8</td><td>throughput</td>' in section
    assert "Kernels 2 → 3" in section and "new (not in the baseline): kws-aie-hw_emu-int8" in section
    assert '<span class="delta bad">+10.00%</span>' in html  # beside the figure in the profiling table
    assert "1 regression(s) against the baseline" in html


def test_failed_checks_show_the_first_diverging_layer_and_top5_side_by_side() -> None:
    golden = Finding(
        "ic-aie-sw_emu-int8", "golden", "outputs differ\nfirst diverging layer: node 'conv1'", where="node 'conv1'"
    )
    top5 = Finding(
        "ic-aie-sw_emu-int8",
        "top5",
        "Top-5 differs",
        top5=[Top5Sample(3, [("cat", 0.9), ("dog", 0.1)], [("dog", 0.6), ("cat", 0.4)])],
        tolerance=0.01,
    )
    travelled = RunRecord.from_dict(json.loads(json.dumps(RunRecord(findings=[top5]).to_dict())))  # as from xdist
    assert travelled.findings == [top5]
    html = render_page(_page([_row()], {}, findings=[top5, golden]), Path("p.html"))
    assert '<p class="where">node &#x27;conv1&#x27;</p>' in html
    assert "<caption>sample 3</caption>" in html and "0.900000</td><td>cat</td>" in html
    assert "0.600000</td><td>dog</td>" in html and html.count('<tr class="bad">') == 2
    assert html.index('data-check="golden"') < html.index('data-check="top5"')  # sorted: same page from -n 2


def test_trace_events_are_in_simulated_microseconds_with_the_cycles_in_args() -> None:
    layers = [LayerPerf("conv", "Conv", cycles=19574.0, start=1250.0, extra={"tile": 3})]
    data = trace_events(Perf("sim", cycles=20824.0, clock_hz=1.25e9, layers=layers))
    (event,) = [e for e in data["traceEvents"] if e["ph"] == "X"]
    assert event["dur"] == pytest.approx(15.6592) and event["ts"] == pytest.approx(1.0)
    assert event["args"]["cycles"] == 19574.0 and event["args"]["start_cycle"] == 1250.0 and event["tid"] == 3
    assert data["otherData"]["clock_hz"] == 1.25e9 and "microseconds" in data["otherData"]["time_unit"]
    no_clock = trace_events(Perf("sim", cycles=10.0, layers=[LayerPerf("k", "Conv", cycles=10.0, start=0.0)]))
    assert [e["dur"] for e in no_clock["traceEvents"] if e["ph"] == "X"] == [10.0]
    assert "no clock" in no_clock["otherData"]["time_unit"]


# --------------------------------------------------------------------------- through pytest


def test_parallel_run_writes_the_serial_page(project: Project) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is not installed (pip install -e '.[test]')")
    project.add_model("ic")
    project.pytester.makeconftest(FLOW_TARGET)
    select = ("-m", "flow", "--tinyaccel-dtype", "int8")
    project.pytester.runpytest_subprocess(*select, "--tinyaccel-save-baseline=base.json")
    pages = {}
    for out, extra in (("serial", ()), ("parallel", ("-n", "2"))):
        report, trace = f"--tinyaccel-report={out}/profile.html", f"--tinyaccel-trace={out}/traces"
        result = project.pytester.runpytest_subprocess(*select, "--tinyaccel-baseline=base.json", report, trace, *extra)
        assert _outcomes(result) == {"passed": 5, "failed": 3}  # the faulty sw_emu: golden, accuracy, Top-5
        pages[out] = (project.path / out / "profile.html").read_text()
    assert pages["parallel"] == pages["serial"]
    page = pages["serial"]
    assert page.count('class="finding"') == 3 and "first diverging layer: node &#x27;k3&#x27;" in page
    assert '<td class="num bad">0.0% (Top 1, n=540)' in page  # below the quality target
    assert '<a href="traces/ic-flow-hw_emu-int8.json">' in page
    assert "0 regression(s) against the baseline" in page
    assert "<tr><td>ic-flow-hw_emu-int8</td><td>cycles</td>" in page  # every gated metric, unchanged


def test_pytest_html_report_gets_each_case_profile_and_chart(project: Project) -> None:
    pytest.importorskip("pytest_html", reason="pytest-html is not installed (report extra)")
    project.add_model("ic")
    project.pytester.makeconftest(FLOW_TARGET)
    result = project.run("-m", "flow", "--target", "hw_emu", "--html=report.html", "--self-contained-html")
    assert _outcomes(result) == {"passed": 6}
    report = (project.path / "report.html").read_text()
    blob = json.loads(unescape(re.search(r'data-jsonblob="([^"]*)"', report).group(1)))
    extras = [e["content"] for test in blob["tests"].values() for run in test for e in run["extras"]]
    assert len(extras) == 2  # once per case (fp32, int8), not once per check
    assert all('class="tinyaccel"' in e and "flowsim &lt;1.0&gt;" in e for e in extras)
    if importlib.util.find_spec("matplotlib"):
        assert all("<svg" in e for e in extras)
    assert '<table class="profile">' in unescape(report)  # pytest-html's summary: the profiling tables


def test_case_extras_are_made_only_when_pytest_html_writes_a_report(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest-html, once installed, is loaded in every run: the per-case charts (about 0.3 s a case) are
    made only with --html."""
    pytest.importorskip("pytest_html", reason="pytest-html is not installed (report extra)")
    from pytest_tinyaccel import output

    calls: list[object] = []
    monkeypatch.setattr(output, "html_extra", lambda *args: calls.append(args) or "")
    project.add_model("ic")
    project.pytester.makeconftest(FLOW_TARGET)
    assert _outcomes(project.run("-m", "flow", "--target", "hw_emu")) == {"passed": 6}
    assert calls == []
    assert _outcomes(project.run("-m", "flow", "--target", "hw_emu", "--html=report.html")) == {"passed": 6}
    assert len(calls) == 6  # each case's tests offer it; the first of each case shows it


def _outcomes(result: pytest.RunResult) -> dict[str, int]:
    counts = result.parseoutcomes()
    counts.pop("deselected", None)
    return counts


# --------------------------------------------------------------------------- in a real browser


@needs_zigzag
@needs_matplotlib
def test_chromium_renders_the_page_of_a_real_run_without_console_errors(project: Project, tmp_path: Path) -> None:
    browser = _chromium()
    project.add_model("ic")
    project.pytester.makeconftest(FLOW_TARGET)
    result = project.run(
        "--target",
        "hw_emu,cpu,flow:sw_emu",
        "--tinyaccel-dtype",
        "int8",
        "--tinyaccel-report=profile.html",
        "--tinyaccel-trace=traces",
    )
    failed = {line.split()[1] for line in result.outlines if line.startswith("FAILED ")}
    assert {f.split("[")[1] for f in failed} == {"ic-flow-sw_emu-int8]"}, failed  # the faulty functional model
    page = project.path / "profile.html"
    with Chromium(browser, tmp_path / "profile") as chromium:
        shown, errors = chromium.open(page.as_uri(), PAGE_FACTS)
    assert errors == []
    rows = {"ic-aie-hw_emu-int8", "ic-gemmini-hw_emu-int8", "ic-flow-hw_emu-int8", "ic-cpu-hw-int8"}
    assert set(shown["rows"]) == rows | {"ic-flow-sw_emu-int8"} and shown["tables"] == 5
    charts = {case["case"]: case["charts"] for case in shown["cases"]}
    assert set(charts) == {c for c in rows if "hw_emu" in c}
    assert all(len(kinds) >= 1 and "layers" in kinds for kinds in charts.values()), charts
    assert "timeline" in charts["ic-flow-hw_emu-int8"] and "timeline" not in charts["ic-gemmini-hw_emu-int8"]
    assert shown["findings"] == ["accuracy", "golden", "top5"] and shown["top5"] >= 1
    assert shown["traces"] and all((project.path / link).is_file() for link in shown["traces"])


PAGE_FACTS = """(() => {
  const visible = (el) => { const r = el.getBoundingClientRect(); return r.width > 100 && r.height > 50; };
  return {
    tables: document.querySelectorAll('table.profile').length,
    rows: [...document.querySelectorAll('table.profile tr[data-case]')].map((r) => r.dataset.case),
    cases: [...document.querySelectorAll('article.case[data-mode="hw_emu"]')].map((a) => ({
      case: a.dataset.case,
      charts: [...a.querySelectorAll('figure.chart')].filter((f) => f.querySelector('svg') && visible(f))
        .map((f) => f.dataset.kind),
    })),
    findings: [...document.querySelectorAll('article.finding')].map((f) => f.dataset.check).sort(),
    top5: document.querySelectorAll('article.finding table.top5').length,
    traces: [...document.querySelectorAll('#traces a')].map((a) => decodeURIComponent(a.getAttribute('href'))),
  };
})()"""


def _chromium() -> str:
    """Debian's chromium (installed by .ci/run); a skip where it is absent, a failure in CI."""
    found = next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")
    return found


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
    NUL-terminated JSON on file descriptors 3 and 4), so no websocket client or browser
    download is needed. Every console error, uncaught exception and blocked load is collected."""

    FLAGS = (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--remote-debugging-pipe",
        "--window-size=1400,2000",
    )
    TIMEOUT = 60.0

    def __init__(self, executable: str, profile: Path) -> None:
        profile.mkdir(parents=True)
        to_browser, from_browser = os.pipe(), os.pipe()
        # above 9, so moving them onto 3 and 4 cannot overwrite one with the other
        theirs = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser[0], from_browser[1])]
        log = str(profile / "chromium.log")
        self.pid = os.posix_spawn(
            executable,
            [executable, *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, theirs[0], 3),
                (os.POSIX_SPAWN_DUP2, theirs[1], 4),
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
        )
        for fd in (*theirs, to_browser[0], from_browser[1]):
            os.close(fd)
        self.out, self.inp = to_browser[1], from_browser[0]
        self.buffer, self.last_id, self.events = b"", 0, []

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.send("Browser.close")
        except (OSError, EOFError, TimeoutError, RuntimeError):
            os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        os.close(self.out)
        os.close(self.inp)

    def open(self, url: str, expression: str) -> tuple[Any, list[str]]:
        """Load `url` in a new tab; the value of `expression` there, and the errors it logged."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable", session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait("Page.loadEventFired", session)
        value = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        return value["result"]["value"], [e for m in self.events if (e := _error(m, session))]

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.out, json.dumps(message).encode() + b"\0")
        while (reply := self._read()).get("id") != self.last_id:
            self.events.append(reply)  # an event, kept for open() and wait()
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait(self, method: str, session: str) -> None:
        while not any(m.get("method") == method and m.get("sessionId") == session for m in self.events):
            self.events.append(self._read())

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.TIMEOUT
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.inp], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer within {self.TIMEOUT:g} s")
            chunk = os.read(self.inp, 1 << 16)
            if not chunk:
                raise EOFError("chromium exited")
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)


def _error(message: dict[str, Any], session: str) -> str | None:
    """The text of a console error, uncaught exception or browser-logged error of `session`."""
    if message.get("sessionId") != session:
        return None
    method, params = message.get("method"), message.get("params", {})
    if method == "Runtime.exceptionThrown":
        return str(params["exceptionDetails"].get("text"))
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        return " ".join(str(a.get("value", a.get("description"))) for a in params.get("args", []))
    if method == "Log.entryAdded" and params["entry"].get("level") == "error":
        return str(params["entry"].get("text"))
    return None
