"""The report writers, called directly on a run record whose fp32 and int8 rows differ in every
figure (so a swap of dtypes, columns or rows shows): the terminal table with and without a
baseline, the Markdown tables, CSV, JSON and its reader, and the small formatters."""

from __future__ import annotations

import copy
import csv
import io
import json
import re

import pytest

from pytest_tinyaccel import record as rec
from pytest_tinyaccel import report
from pytest_tinyaccel.errorstats import ErrorStats
from pytest_tinyaccel.perf import Perf
from pytest_tinyaccel.record import CaseResult, ProfileRow, RunRecord

AIE_COLUMNS = ("Kernels", "Buffers", "Stream", "PLIO", "GMIO")
EXACT = ErrorStats(0.0, 0.0, float("inf"), 1.0, None, 12)
INT8 = ErrorStats(2.0, 0.5, 31.25, 0.998125, 0.875, 12)


def aie(dtype, cycles, throughput, kernels, efficiency, accuracy, agreement, stats, from_cache=False):
    resources = {"Kernels": kernels, "Buffers": 2 * kernels, "Stream": kernels + 3, "PLIO": 2, "GMIO": 1}
    perf = Perf("aie model", cycles, 1.25e9, cycles * 0.8, throughput, resources, efficiency)
    return ProfileRow(
        "kws", "aie", "hw_emu", dtype, "Keyword Spotting", "DS-CNN", "https://example.org/kws", "top1", 0.9, perf,
        AIE_COLUMNS, accuracy, 1000, agreement, None, from_cache, stats,
    )  # fmt: skip


def cpu(dtype, ns, throughput, accuracy, loadgen=None):
    perf = Perf("onnxruntime", latency_ns=ns, throughput=throughput, resources={"threads": 1})
    return ProfileRow(
        "ic", "cpu", "hw", dtype, "Image Classification", "", "", "top5", None, perf, (), accuracy, 200, None, loadgen
    )


def result(subject, check, outcome, when="call", message=""):
    return rec.TestResult(
        f"tests/test_models.py::test_{check}[{subject}]", subject, "case", check, outcome, when, message
    )


@pytest.fixture
def record() -> RunRecord:
    """kws on aie: fp32 passed, int8 failed its golden check (cached); ic on cpu: fp32 passed (LoadGen),
    int8 errored in a user's fixture; vww failed without figures; ad skipped."""
    rows = [
        aie("fp32", 839599.0, 1488.0, 20, 0.42, 0.917, 1.0, {"y": EXACT}),
        aie("int8", 402772.0, 3104.5, 23, 0.615, 0.905, 0.9, {"y": INT8}, from_cache=True),
        cpu("int8", 61234.4, 55.55, 0.84),
        cpu("fp32", 120000.0, 8333.3, 0.995, {"p90_latency_ns": 130000.4, "offline_samples_per_s": 9100.0}),
    ]
    tests = [
        result("kws-aie-hw_emu-fp32", "golden", "passed"),
        result("kws-aie-hw_emu-fp32", "accuracy", "passed"),
        result("kws-aie-hw_emu-int8", "golden", "failed", message="output 'y' differs"),
        result("kws-aie-hw_emu-int8", "accuracy", "passed"),
        result("ic-cpu-hw-fp32", "golden", "passed"),
        result("ic-cpu-hw-int8", "budget", "errors", "setup", "RuntimeError: no budget"),
        result("ic-cpu-hw-int8", "golden", "passed"),
        result("vww-cpu-hw-fp32", "golden", "failed", message="build failed | twice"),
        result("ad-cpu-hw-fp32", "golden", "skipped", message="no golden"),
    ]
    extra = {"kws-aie-hw_emu-int8": {"owner": "dsp"}, "ic-cpu-hw-fp32": {"owner": "cv", "ticket": "T-1"}}
    return RunRecord(tests=tests, rows={r.case_id: r for r in rows}, extra=extra)


def cells(line: str, sep: str = r"\s{2,}") -> list[str]:
    return [c.strip() for c in re.split(sep, line.strip())]


def table_rows(text: str, title: str) -> list[list[str]]:
    """The data rows of the terminal table under `title` (cells split on runs of 2+ spaces)."""
    lines = text.split("\n\n")
    block = lines[lines.index(title) + 1].splitlines()
    return [cells(line) for line in block[2:]]


# --------------------------------------------------------------------------- terminal


def test_terminal_rows_carry_each_dtypes_own_figures(record):
    text = report.terminal(record)
    assert table_rows(text, "aie hw_emu: aie model") == [
        ["kws", "fp32", "passed", "839599 cycles", "1488", "20/40/23/2/1", "42.0%", "91.7% (Top 1)", "inf dB",
         "90.0% (Top 1)", "100%"],
        ["kws", "int8", "failed (golden)", "402772 cycles (cached) †", "3104 †", "23/46/26/2/1", "61.5%",
         "90.5% (Top 1) †", "31.2 dB", "90.0% (Top 1)", "90%", "dsp"],
    ]  # fmt: skip
    assert table_rows(text, "cpu hw: onnxruntime") == [
        ["ic", "fp32", "passed", "130000 ns (p90)", "9100 (Offline)", "threads 1", "-", "99.5% (Top 5, n=200)", "-",
         "-", "-", "cv", "T-1"],
        ["ic", "int8", "error (budget setup)", "61234 ns †", "55.5 †", "threads 1", "-", "84.0% (Top 5, n=200) †",
         "-", "-", "-"],
    ]  # fmt: skip
    headers = text.split("\n\n")[1].splitlines()[0]
    assert cells(headers) == [
        "Model", "Dtype", "Status", "Latency", "Throughput (/s)", "Resources (Kernels/Buffers/Stream/PLIO/GMIO)",
        "Efficiency", "Accuracy", "SQNR", "Quality Target", "Argmax = golden", "owner", "ticket",
    ]  # fmt: skip
    assert cells(text.split("\n\n")[3].splitlines()[0])[5] == "Resources"
    parts = text.split("\n\n")
    assert parts[0] == "aie hw_emu: aie model" and parts[2] == "cpu hw: onnxruntime"
    assert parts[4].splitlines() == [
        "no figures (the case did not run to the end):",
        "  vww-cpu-hw-fp32: failed (golden): golden: build failed | twice",
    ]
    assert parts[5] == "tinyaccel tests: 5 passed, 2 failed, 1 skipped, 1 error"
    assert len(parts) == 6


def test_terminal_with_a_baseline_shows_the_change_against_each_dtypes_own_figures(record):
    base = {k: copy.deepcopy(v) for k, v in record.rows.items() if k != "ic-cpu-hw-fp32"}
    base["kws-aie-hw_emu-int8"].perf.cycles = 400000.0
    base["kws-aie-hw_emu-int8"].perf.throughput = 3200.0
    base["kws-aie-hw_emu-int8"].accuracy = 0.91
    base["kws-aie-hw_emu-fp32"].perf.cycles = 1_000_000.0
    base["ic-cpu-hw-int8"].perf.latency_ns = 50000.0
    base["ic-cpu-hw-int8"].perf.throughput = 0.0  # no figure to compare with
    base["ic-cpu-hw-int8"].accuracy = None
    text = report.terminal(record, base)
    kws = table_rows(text, "aie hw_emu: aie model")
    assert kws[0][3:8] == [
        "839599 cycles (-16.0%)",
        "1488 (+0.0%)",
        "20/40/23/2/1",
        "42.0%",
        "91.7% (Top 1) (+0.00 pts)",
    ]
    assert kws[1][3:8] == [
        "402772 cycles (cached) (+0.7%) †",
        "3104 (-3.0%) †",
        "23/46/26/2/1",
        "61.5%",
        "90.5% (Top 1) (-0.50 pts) †",
    ]
    ic = table_rows(text, "cpu hw: onnxruntime")
    assert ic[0][3] == "130000 ns (p90) (new)"
    assert ic[1][3:8] == ["61234 ns (+22.5%) †", "55.5 †", "threads 1", "-", "84.0% (Top 5, n=200) †"]


def test_terminal_of_an_empty_record_and_of_one_without_tests():
    assert report.terminal(RunRecord()) == ""
    only_rows = RunRecord(rows={"ic-cpu-hw-fp32": cpu("fp32", 10.0, None, None)})
    text = report.terminal(only_rows)
    assert "tinyaccel tests" not in text
    assert table_rows(text, "cpu hw: onnxruntime") == [
        ["ic", "fp32", "skipped", "10 ns †", "-", "threads 1", "-", "-"] + ["-"] * 3
    ]


# --------------------------------------------------------------------------- Markdown


def md_rows(text: str, heading: str) -> list[list[str]]:
    """The data rows of the Markdown table under `## heading`."""
    lines = text.splitlines()
    start = lines.index(f"## {heading}") + 2
    assert lines[start - 1] == "", heading
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return [cells(line.strip("|"), r"\s*(?<!\\)\|\s*") for line in lines[start + 2 : end]]


def test_markdown_stacks_each_dtypes_own_figures_in_dtype_order(record):
    text = report.markdown(record)
    assert md_rows(text, "aie hw_emu: aie model") == [
        ["Keyword Spotting", "fp32 <br/> int8", "passed <br/> failed (golden)",
         "839599 cycles <br/> 402772 cycles (cached) †", "1488 <br/> 3104 †", "20/40/23/2/1 <br/> 23/46/26/2/1",
         "91.7% (Top 1) <br/> 90.5% (Top 1) †", "90.0% (Top 1)", "[DS-CNN](https://example.org/kws)", "<br/> dsp",
         "<br/>"],
    ]  # fmt: skip
    assert md_rows(text, "cpu hw: onnxruntime") == [
        ["Image Classification", "fp32 <br/> int8", "passed <br/> error (budget setup)",
         "130000 ns (p90) <br/> 61234 ns †", "9100 (Offline) <br/> 55.5 †", "threads 1 <br/> threads 1",
         "99.5% (Top 5, n=200) <br/> 84.0% (Top 5, n=200) †", "-", "ic", "cv <br/>", "T-1 <br/>"],
    ]  # fmt: skip
    lines = text.splitlines()
    header = lines[lines.index("## aie hw_emu: aie model") + 2]
    assert cells(header.strip("|"), r"\s*\|\s*") == [
        "Use Case", "Dtype", "Status", "Latency (cycles or ns)", "Throughput (instances/s)",
        "Resource Utilization (Kernels/Buffers/Stream/PLIO/GMIO)", "Accuracy (first 1k)", "Quality Target", "Model",
        "owner", "ticket",
    ]  # fmt: skip
    assert "| Resource Utilization " in lines[lines.index("## cpu hw: onnxruntime") + 2]
    assert text.count(report.MARK_NOTE) == 2


def test_markdown_opens_with_pytests_count_and_every_case_worst_first(record):
    text = report.markdown(record)
    lines = text.splitlines()
    assert lines[:6] == ["# Profiling", "", "**Tests:** 5 passed, 2 failed, 1 skipped, 1 error", "", "## Cases", ""]
    assert cells(lines[6].strip("|"), r"\s*\|\s*") == ["Case", "Status", "Detail", "owner", "ticket"]
    assert md_rows(text, "Cases") == [
        ["ic-cpu-hw-int8", "error (budget setup)", "budget (setup): RuntimeError: no budget", "", ""],
        ["kws-aie-hw_emu-int8", "failed (golden)", "golden: output 'y' differs", "dsp", ""],
        ["vww-cpu-hw-fp32", "failed (golden)", "golden: build failed \\| twice", "", ""],
        ["ic-cpu-hw-fp32", "passed", "-", "cv", "T-1"],
        ["kws-aie-hw_emu-fp32", "passed", "-", "", ""],
        ["ad-cpu-hw-fp32", "skipped", "no golden", "", ""],
    ]


def test_markdown_error_statistics_per_case_and_output(record):
    text = report.markdown(record)
    assert md_rows(text, "Error statistics against the golden") == [
        ["kws-aie-hw_emu-fp32", "y", "0", "0", "inf dB (exact)", "1", "-"],
        ["kws-aie-hw_emu-int8", "y", "2", "0.5", "31.2 dB", "0.998125", "87.50%"],
    ]
    assert report.error_table(record)[1] == ["kws-aie-hw_emu-int8", "y", "2", "0.5", "31.2 dB", "0.998125", "87.50%"]
    assert report.error_table(record)[0][4:] == ["inf dB (exact)", "1.000000", "-"]
    clean = RunRecord([result("ic-cpu-hw-fp32", "golden", "passed")], {"ic-cpu-hw-fp32": cpu("fp32", 10.0, None, None)})
    assert "Error statistics" not in report.markdown(clean)
    assert report.MARK_NOTE not in report.markdown(clean)
    assert report.markdown(clean).endswith("| ic      |\n")


# --------------------------------------------------------------------------- CSV and JSON


def test_csv_has_one_line_per_case_with_its_own_figures(record):
    lines = list(csv.DictReader(io.StringIO(report.to_csv(record))))
    assert [r["case"] for r in lines] == [
        "ic-cpu-hw-int8", "kws-aie-hw_emu-int8", "vww-cpu-hw-fp32", "ic-cpu-hw-fp32", "kws-aie-hw_emu-fp32",
        "ad-cpu-hw-fp32",
    ]  # fmt: skip
    by = {r["case"]: r for r in lines}
    fp32, int8 = by["kws-aie-hw_emu-fp32"], by["kws-aie-hw_emu-int8"]
    assert (fp32["dtype"], fp32["cycles"], fp32["throughput"], fp32["accuracy"]) == (
        "fp32",
        "839599.0",
        "1488.0",
        "0.917",
    )
    assert (int8["dtype"], int8["cycles"], int8["throughput"], int8["accuracy"]) == (
        "int8",
        "402772.0",
        "3104.5",
        "0.905",
    )
    assert (int8["status"], int8["detail"], int8["passed"], int8["failed"], int8["owner"]) == (
        "failed", "golden: output 'y' differs", "1", "1", "dsp",
    )  # fmt: skip
    assert (int8["from_cache"], fp32["from_cache"], int8["simulator"], int8["clock_hz"]) == (
        "True", "False", "aie model", "1250000000.0",
    )  # fmt: skip
    assert [int8[f"resources.{k}"] for k in AIE_COLUMNS] == ["23", "46", "26", "2", "1"]
    assert [fp32[f"resources.{k}"] for k in AIE_COLUMNS] == ["20", "40", "23", "2", "1"]
    assert (int8["resources.threads"], by["ic-cpu-hw-int8"]["resources.threads"]) == ("", "1")
    assert [int8[f"y.{s}"] for s in ("max_abs", "rmse", "sqnr_db", "cosine", "within_1lsb")] == [
        "2.0", "0.5", "31.25", "0.998125", "0.875",
    ]  # fmt: skip
    assert [fp32[f"y.{s}"] for s in ("sqnr_db", "within_1lsb")] == ["inf", ""]
    ic = by["ic-cpu-hw-fp32"]
    assert (ic["loadgen.p90_latency_ns"], ic["loadgen.offline_samples_per_s"], ic["ticket"]) == (
        "130000.4",
        "9100.0",
        "T-1",
    )
    assert by["ic-cpu-hw-int8"]["loadgen.p90_latency_ns"] == "" and by["ic-cpu-hw-int8"]["errors"] == "1"
    vww = report.to_csv(record).splitlines()[3]
    assert vww == "vww-cpu-hw-fp32,failed,golden: build failed | twice,0,1,0,0,0,0,,"
    header = report.to_csv(record).splitlines()[0].split(",")
    assert header[:11] == ["case", "status", "detail", "passed", "failed", "skipped", "errors", "xfailed", "xpassed",
                           "owner", "ticket"]  # fmt: skip
    assert not {"perf", "error_stats", "resource_columns", "loadgen"} & set(header)
    assert "\r" not in report.to_csv(record)


def test_json_holds_the_count_every_case_and_rows_with_their_status(record):
    text = report.to_json(record, {"host": "ci"})
    assert text.startswith('{\n "cases": [\n  {\n   "case": "ic-cpu-hw-int8",\n   "counts": {\n    "errors": 1,')
    assert text.endswith("\n}\n")
    data = json.loads(text)
    assert (data["format"], data["environment"]) == ("tinyaccel-profile/3", {"host": "ci"})
    assert data["summary"] == {"passed": 5, "failed": 2, "skipped": 1, "errors": 1, "xfailed": 0, "xpassed": 0}
    assert [c["case"] for c in data["cases"]][:2] == ["ic-cpu-hw-int8", "kws-aie-hw_emu-int8"]
    case = data["cases"][1]
    assert (case["kind"], case["status"], case["detail"], case["extra"]) == (
        "case", "failed", "golden: output 'y' differs", {"owner": "dsp"},
    )  # fmt: skip
    assert case["counts"]["failed"] == 1 and case["counts"]["passed"] == 1
    assert case["tests"][0] == {
        "nodeid": "tests/test_models.py::test_accuracy[kws-aie-hw_emu-int8]",
        "check": "accuracy",
        "outcome": "passed",
        "when": "call",
        "message": "",
    }
    rows = {(r["model"], r["dtype"]): r for r in data["rows"]}
    assert [(r["model"], r["dtype"]) for r in data["rows"]] == [
        ("kws", "fp32"), ("kws", "int8"), ("ic", "fp32"), ("ic", "int8"),
    ]  # fmt: skip
    assert (rows["kws", "fp32"]["status"], rows["kws", "int8"]["status"]) == ("passed", "failed")
    assert (rows["kws", "fp32"]["perf"]["cycles"], rows["kws", "int8"]["perf"]["cycles"]) == (839599.0, 402772.0)
    assert rows["kws", "int8"]["error_stats"]["y"]["sqnr_db"] == 31.25
    assert rows["kws", "fp32"]["error_stats"]["y"]["sqnr_db"] == "inf"


def test_json_reads_back_as_the_same_rows_and_bad_files_say_why(record, tmp_path):
    path = tmp_path / "profile.json"
    report.write_report(path, record, {"host": "ci"})
    environment, rows = report.load_json(path)
    assert environment == {"host": "ci"}
    assert {r.case_id: r for r in rows} == record.rows
    old = json.loads(path.read_text())
    old["format"] = "tinyaccel-profile/2"
    path.write_text(json.dumps(old))
    assert len(report.load_json(path)[1]) == 4
    for payload, message in [
        ({"format": "tinyaccel-profile/1"}, "not a tinyaccel-profile/3 profile (format 'tinyaccel-profile/1'); "
         "save it again with --tinyaccel-save-baseline"),
        ({"format": "other"}, "not a tinyaccel-profile/3 profile (format 'other')"),
        ([1, 2], "not a tinyaccel-profile/3 profile (format None)"),
        ({"format": "tinyaccel-profile/3", "rows": []}, "expected 'environment' (a table) and 'rows' (a list)"),
        ({"format": "tinyaccel-profile/3", "environment": {}, "rows": {}},
         "expected 'environment' (a table) and 'rows' (a list)"),
        ({"format": "tinyaccel-profile/3", "environment": {}, "rows": [{"model": "x"}]},
         "a row is not a profile row (KeyError: 'perf')"),
    ]:  # fmt: skip
        path.write_text(json.dumps(payload))
        with pytest.raises(ValueError) as info:
            report.load_json(path)
        if "a row is not" in message:
            assert str(info.value).startswith(f"{path}: {message}")
        else:
            assert str(info.value) == f"{path}: {message}"


def test_write_report_picks_the_format_by_suffix(record, tmp_path):
    for suffix, start in ((".md", "# Profiling"), (".json", "{"), (".csv", "case,status,detail")):
        path = tmp_path / f"profile{suffix}"
        report.write_report(path, record, {})
        assert path.read_text().startswith(start)
    with pytest.raises(ValueError, match=r"profile\.txt: report suffix must be one of \['\.csv', '\.json', '\.md'\]"):
        report.write_report(tmp_path / "profile.txt", record, {})
    assert not (tmp_path / "profile.txt").exists()


# --------------------------------------------------------------------------- formatters


def test_summary_uses_pytests_words():
    assert report.summary({"passed": 3, "failed": 0, "errors": 1}) == "3 passed, 1 error"
    assert report.summary({"errors": 2, "xfailed": 1}) == "2 errors, 1 xfailed"
    assert report.summary({"passed": 0}) == "no tests ran"


def test_status_names_the_failed_checks_and_the_phase_of_errors():
    tests = [
        result("c", "golden", "failed"),
        result("c", "top5", "failed"),
        result("c", "golden", "failed", "teardown"),
    ]
    assert report.fmt_status(CaseResult("c", "case", "failed", tests)) == "failed (golden, top5)"
    errors = [result("c", "golden", "errors", "setup"), result("c", "golden", "errors", "teardown")]
    assert report.fmt_status(CaseResult("c", "case", "error", errors)) == "error (golden setup, golden teardown)"
    assert report.fmt_status(CaseResult("c", "case", "failed", [])) == "failed"
    assert report.fmt_status(CaseResult("c", "case", "xfailed", [result("c", "golden", "xfailed")])) == "xfailed"
    assert report.fmt_status(None) == "-"


def test_figure_formatters():
    row = cpu("fp32", 1234.5, 99.94, 0.5)
    assert (report.fmt_latency(row), report.fmt_throughput(row)) == ("1234 ns", "99.9")
    row.perf.throughput = 100.4
    assert report.fmt_throughput(row) == "100"
    row.perf.throughput, row.perf.latency_ns = None, None
    assert (report.fmt_latency(row), report.fmt_throughput(row)) == ("-", "-")
    row.from_cache = True
    assert report.fmt_latency(row) == "-"
    row.perf.cycles = 7.0
    assert report.fmt_latency(row) == "7 cycles (cached)"
    row.metric, row.accuracy, row.samples, row.quality_target = "auc", 0.8766, 1000, 0.85
    assert (report.fmt_accuracy(row), report.fmt_target(row)) == ("0.877 (AUC)", "0.850 (AUC)")
    row.accuracy = None
    assert report.fmt_accuracy(row) == "-"
    row.resource_columns = ("A", "B", "C")
    row.perf.resources = {"B": 2, "A": 1, "extra": 5, "more": 6}
    assert report.fmt_resources(row) == "1/2/-; extra 5, more 6"
    row.perf.resources = {}
    assert report.fmt_resources(row) == "-"
    row.resource_columns = ()
    row.perf.resources = {"x": 1}
    assert report.fmt_resources(row) == "x 1"
    assert report.resource_header([row]) == "Resource Utilization"
    row.error_stats = {"a": INT8, "b": ErrorStats(1.0, 1.0, 12.04, 0.9, None, 3), "c": EXACT}
    assert report.fmt_sqnr(row) == "12.0 dB"
    row.error_stats = {"c": EXACT}
    assert report.fmt_sqnr(row) == "inf dB"
    row.error_stats = {}
    assert report.fmt_sqnr(row) == "-"


def test_sections_are_by_target_and_mode_and_name_every_simulator_once():
    a = cpu("fp32", 1.0, None, None)
    b = cpu("int8", 1.0, None, None)
    b.perf.simulator = "onnxruntime; int8 from the cache"
    c = aie("fp32", 1.0, 1.0, 1, None, None, None, {})
    sections = list(report._sections([b, c, a]))
    assert [(title, [r.dtype for r in rows]) for title, rows in sections] == [
        ("aie hw_emu: aie model", ["fp32"]),
        ("cpu hw: onnxruntime; int8 from the cache", ["fp32", "int8"]),
    ]
    odd = cpu("bf16", 1.0, None, None)
    assert [r.dtype for r in report.sort_rows([odd, b, a])] == ["fp32", "int8", "bf16"]


def test_delta_against_a_missing_or_zero_figure_is_empty():
    assert report._delta(None, 5.0) == "" and report._delta(5.0, None) == "" and report._delta(5.0, 0.0) == ""
    assert report._delta(5.0, 4.0) == " (+25.0%)"


def test_markdown_has_one_line_per_model_of_a_section(record):
    other = copy.deepcopy(record.rows["kws-aie-hw_emu-int8"])
    other.model, other.use_case, other.architecture, other.link = "vww", "Visual Wake Words", "", ""
    record.rows[other.case_id] = other
    rows = md_rows(report.markdown(record), "aie hw_emu: aie model")
    assert [r[:2] for r in rows] == [["Keyword Spotting", "fp32 <br/> int8"], ["Visual Wake Words", "int8"]]
    assert rows[1][8] == "vww"


def test_only_cases_that_did_not_finish_are_listed_without_figures():
    tests = [
        result("a-cpu-hw-fp32", "golden", "failed", message="crashed"),
        result("b-cpu-hw-fp32", "golden", "errors", "setup", "no model"),
        result("c-cpu-hw-fp32", "mine", "passed"),
        result("d-cpu-hw-fp32", "golden", "skipped", message="off"),
    ]
    text = report.terminal(RunRecord(tests=tests))
    assert text.split("\n\n")[0].splitlines() == [
        "no figures (the case did not run to the end):",
        "  b-cpu-hw-fp32: error (golden setup): golden (setup): no model",
        "  a-cpu-hw-fp32: failed (golden): golden: crashed",
    ]
