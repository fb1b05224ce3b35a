"""The pre-merge gate, called directly: `baseline.compare` and `Change` (which metric, its
direction, the margin and its boundary, the message), `Baseline` (a saved profile, a bad
one), and `margins.parse_margins` (every unit and every way to get it wrong)."""

from __future__ import annotations

import json
import math

import pytest

from pytest_tinyaccel.baseline import Baseline, BaselineError, Change, compare
from pytest_tinyaccel.config import ConfigError
from pytest_tinyaccel.errorstats import ErrorStats
from pytest_tinyaccel.margins import DEFAULT_MARGINS, METRICS, parse_margins
from pytest_tinyaccel.perf import Perf
from pytest_tinyaccel.record import ProfileRow, RunRecord
from pytest_tinyaccel.report import to_json

MARGINS = {"cycles": 1.0, "ns": 25.0, "throughput": 20.0, "accuracy": 0.5}


def row(*, cycles=None, ns=None, throughput=None, accuracy=None, metric="top1", stats=None, dtype="int8"):
    perf = Perf("sim", cycles=cycles, latency_ns=ns, throughput=throughput)
    return ProfileRow(
        "kws", "aie", "hw_emu", dtype, "KWS", "DS-CNN", "", metric, 0.9, perf,
        accuracy=accuracy, samples=100, error_stats=stats or {},
    )  # fmt: skip


def stats(sqnr: float) -> ErrorStats:
    return ErrorStats(0.1, 0.01, sqnr, 0.99, None, 10)


def only(changes, metric):
    found = [c for c in changes if c.metric == metric]
    assert len(found) == 1, changes
    return found[0]


# --------------------------------------------------------------------------- which metrics


def test_simulated_cycles_are_gated_with_the_cycles_margin_and_not_the_ns():
    changes = compare(row(cycles=110, ns=50), row(cycles=100, ns=500), MARGINS)
    assert [c.metric for c in changes] == ["cycles"]
    c = changes[0]
    assert (c.unit, c.baseline, c.now, c.allowed, c.higher_is_better) == ("cycles", 100, 110, 1.0, False)
    assert c.regressed


@pytest.mark.parametrize(("now_cycles", "base_cycles"), [(None, 100), (100, None), (None, None)])
def test_without_cycles_on_both_sides_the_ns_latency_is_gated(now_cycles, base_cycles):
    changes = compare(row(cycles=now_cycles, ns=130.0), row(cycles=base_cycles, ns=100.0), MARGINS)
    c = only(changes, "ns")
    assert (c.unit, c.baseline, c.now, c.allowed, c.higher_is_better) == ("ns", 100.0, 130.0, 25.0, False)


def test_a_slower_ns_latency_regresses_a_faster_one_does_not():
    slower = only(compare(row(ns=126.0), row(ns=100.0), MARGINS), "ns")
    assert slower.delta == pytest.approx(26.0) and slower.regressed
    assert only(compare(row(ns=125.0), row(ns=100.0), MARGINS), "ns").regressed is False  # at the margin
    faster = only(compare(row(ns=10.0), row(ns=100.0), MARGINS), "ns")
    assert faster.delta == pytest.approx(-90.0) and not faster.regressed


def test_a_lower_throughput_regresses_a_higher_one_does_not():
    lower = only(compare(row(ns=1.0, throughput=79.0), row(ns=1.0, throughput=100.0), MARGINS), "throughput")
    assert (lower.unit, lower.allowed, lower.higher_is_better) == ("/s", 20.0, True)
    assert lower.delta == pytest.approx(-21.0) and lower.regressed
    at = only(compare(row(throughput=80.0), row(throughput=100.0), MARGINS), "throughput")
    assert not at.regressed
    higher = only(compare(row(throughput=1000.0), row(throughput=100.0), MARGINS), "throughput")
    assert higher.delta == pytest.approx(900.0) and not higher.regressed


def test_a_simulated_throughput_takes_the_cycles_margin():
    c = only(compare(row(cycles=100, throughput=99.0), row(cycles=100, throughput=100.0), MARGINS), "throughput")
    assert c.allowed == 1.0 and not c.regressed
    c = only(compare(row(cycles=100, throughput=98.0), row(cycles=100, throughput=100.0), MARGINS), "throughput")
    assert c.regressed
    c = only(compare(row(cycles=None, throughput=98.0), row(cycles=100, throughput=100.0), MARGINS), "throughput")
    assert c.allowed == 20.0


def test_accuracy_is_in_points_and_auc_has_no_percent_unit():
    c = only(compare(row(accuracy=0.894), row(accuracy=0.9), MARGINS), "accuracy")
    assert (c.unit, c.higher_is_better, c.allowed) == ("%", True, 0.5)
    assert c.delta == pytest.approx(-0.6) and c.regressed
    assert not only(compare(row(accuracy=0.8955), row(accuracy=0.9), MARGINS), "accuracy").regressed
    assert not only(compare(row(accuracy=0.95), row(accuracy=0.9), MARGINS), "accuracy").regressed
    auc = only(compare(row(accuracy=0.8, metric="auc"), row(accuracy=0.9, metric="auc"), MARGINS), "accuracy")
    assert auc.unit == "" and auc.regressed


def test_a_metric_missing_on_either_side_is_not_compared():
    assert compare(row(), row(cycles=1, ns=1, throughput=1, accuracy=1), MARGINS) == []
    assert compare(row(cycles=1, ns=1, throughput=1, accuracy=1), row(), MARGINS) == []
    assert [c.metric for c in compare(row(throughput=1.0), row(throughput=2.0, ns=3.0), MARGINS)] == ["throughput"]
    assert [c.metric for c in compare(row(accuracy=0.5, ns=1.0), row(accuracy=0.5), MARGINS)] == ["accuracy"]


def test_sqnr_is_gated_only_when_a_margin_asks_for_it():
    now = row(stats={"y": stats(30.0), "z": stats(math.nan), "new": stats(10.0)})
    base = row(stats={"y": stats(40.0), "z": stats(20.0), "gone": stats(5.0)})
    assert compare(now, base, MARGINS) == []
    changes = compare(now, base, {**MARGINS, "sqnr": 1.0})
    assert [(c.metric, c.output, c.unit, c.higher_is_better, c.allowed) for c in changes] == [
        ("sqnr", "y", "dB", True, 1.0),
        ("sqnr", "z", "dB", True, 1.0),
    ]
    y, z = changes
    assert y.delta == pytest.approx(-10.0) and y.regressed
    assert z.now == -math.inf and z.regressed  # NaN outputs are worse than any SQNR
    small = compare(row(stats={"y": stats(39.5)}), row(stats={"y": stats(40.0)}), {**MARGINS, "sqnr": 1.0})
    assert not small[0].regressed


def test_sqnr_against_a_nan_baseline_is_not_compared_and_exact_stays_exact():
    margins = {**MARGINS, "sqnr": 0.0}
    assert compare(row(stats={"y": stats(30.0)}), row(stats={"y": stats(math.nan)}), margins) == []
    (exact,) = compare(row(stats={"y": stats(math.inf)}), row(stats={"y": stats(math.inf)}), margins)
    assert exact.delta == 0.0 and not exact.regressed
    (lost,) = compare(row(stats={"y": stats(60.0)}), row(stats={"y": stats(math.inf)}), margins)
    assert lost.delta == -math.inf and lost.regressed


# --------------------------------------------------------------------------- Change


def test_delta_is_relative_for_latency_and_throughput_points_for_accuracy_db_for_sqnr():
    assert Change("cycles", "cycles", 200, 250, 0, False).delta == pytest.approx(25.0)
    assert Change("throughput", "/s", 200, 150, 0, True).delta == pytest.approx(-25.0)
    assert Change("ns", "ns", 0, 150, 0, False).delta == 0.0  # no baseline figure: no relative change
    assert Change("accuracy", "%", 0.5, 0.75, 0, True).delta == pytest.approx(25.0)
    assert Change("sqnr", "dB", 20.0, 23.5, 0, True).delta == pytest.approx(3.5)


def test_the_margin_boundary_is_allowed_and_just_beyond_it_is_not():
    assert not Change("cycles", "cycles", 100, 110, 10.0, False).regressed
    assert Change("cycles", "cycles", 100, 110.001, 10.0, False).regressed
    assert not Change("throughput", "/s", 100, 90, 10.0, True).regressed
    assert Change("throughput", "/s", 100, 89.999, 10.0, True).regressed
    assert not Change("cycles", "cycles", 100, 100, 0.0, False).regressed
    assert Change("cycles", "cycles", 1_000_000, 1_000_001, 0.0, False).regressed  # a zero margin: one cycle


def test_describe_says_what_changed_by_how_much_and_what_was_allowed():
    assert Change("cycles", "cycles", 1000, 1100, 5.0, False).describe() == (
        "cycles: baseline 1000 cycles, now 1100 cycles (+10.00%; allowed 5%)"
    )
    assert Change("ns", "ns", 2_000_000.0, 1_500_000.0, 25.0, False).describe() == (
        "ns: baseline 2e+06 ns, now 1.5e+06 ns (-25.00%; allowed 25%)"
    )
    assert Change("accuracy", "%", 0.9, 0.885, 0.5, True).describe() == (
        "accuracy: baseline 90.00%, now 88.50% (-1.50 pts; allowed 0.5 pts)"
    )
    assert Change("accuracy", "", 0.9, 0.85, 0.5, True).describe() == (
        "accuracy: baseline 0.9, now 0.85 (-5.00 pts; allowed 0.5 pts)"
    )
    assert Change("sqnr", "dB", 40.0, 38.5, 1.0, True, "logits").describe() == (
        "sqnr logits: baseline 40 dB, now 38.5 dB (-1.50 dB; allowed 1 dB)"
    )
    assert Change("throughput", "/s", 10.0, 12.0, 20.0, True).label == "throughput"
    assert Change("throughput", "/s", 10.0, 12.0, 20.0, True).suffix == "%"


# --------------------------------------------------------------------------- Baseline files


def test_a_saved_profile_is_read_back_by_case_id(tmp_path):
    record = RunRecord(rows={})
    for r in (row(cycles=10, dtype="int8"), row(cycles=20, dtype="fp32")):
        record.rows[r.case_id] = r
    path = tmp_path / "base.json"
    path.write_text(to_json(record, {"machine": "x"}))
    base = Baseline(path)
    assert base.path == path and base.environment == {"machine": "x"}
    assert sorted(base.rows) == ["kws-aie-hw_emu-fp32", "kws-aie-hw_emu-int8"]
    assert base.get("kws-aie-hw_emu-fp32").perf.cycles == 20
    assert base.get("ic-aie-hw_emu-int8") is None


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (None, "No such file"),
        ("{", "Expecting property name"),
        ('{"format": "tinyaccel-profile/1", "rows": []}', "not a tinyaccel-profile/3 profile"),
        ('{"format": "tinyaccel-profile/3", "environment": {}, "rows": [{"model": 1}]}', "a row is not a profile row"),
    ],
)
def test_an_unreadable_baseline_names_the_option_the_file_and_why(tmp_path, text, found):
    path = tmp_path / "base.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(BaselineError) as info:
        Baseline(path)
    message = str(info.value)
    assert message.startswith(f"--tinyaccel-baseline {path}: cannot read it as a tinyaccel profile (")
    assert found in message


# --------------------------------------------------------------------------- margins


def test_margins_from_a_string_and_from_a_table():
    assert parse_margins("cycles=0%,ns=10%,throughput=12.5%,accuracy=0.5,sqnr=1dB", "here") == {
        "cycles": 0.0,
        "ns": 10.0,
        "throughput": 12.5,
        "accuracy": 0.5,
        "sqnr": 1.0,
    }
    assert parse_margins({"ns": "10%", "accuracy": 1, "sqnr": "2 DB"}, "here") == {
        "ns": 10.0,
        "accuracy": 1.0,
        "sqnr": 2.0,
    }
    assert parse_margins(" ns = 5% , ,accuracy= 2 ", "here") == {"ns": 5.0, "accuracy": 2.0}
    assert parse_margins("", "here") == {}
    assert set(METRICS) == {*DEFAULT_MARGINS, "sqnr"}
    assert DEFAULT_MARGINS == {"cycles": 0.0, "ns": 25.0, "throughput": 25.0, "accuracy": 0.5}


@pytest.mark.parametrize(
    ("spec", "key", "problem"),
    [
        ("latency=5%", "latency", "unknown metric; use cycles, ns, throughput, accuracy, sqnr"),
        ("accuracy=0.5%", "accuracy", "accuracy margin is in points (e.g. accuracy=0.5), not a percentage"),
        ("sqnr=1", "sqnr", "sqnr margin is in dB, e.g. sqnr=1dB"),
        ("sqnr", "sqnr", "sqnr margin is in dB, e.g. sqnr=1dB"),
        ("ns=10", "ns", "ns margin must be a percentage, e.g. ns=10%"),
        ("cycles", "cycles", "cycles margin must be a percentage, e.g. cycles=10%"),
        ("throughput=fast%", "throughput", "'fast%' is not a number"),
        ("sqnr=xdB", "sqnr", "'x' is not a number"),
        ("accuracy=", "accuracy", "'' is not a number"),
        ("accuracy", "accuracy", "'' is not a number"),
        ("ns=10%=5%", "ns", "'10%=5%' is not a number"),
        ("ns=10X%", "ns", "'10X%' is not a number"),
        ("ns=-1%", "ns", "margin must be a finite number and must not be negative, got '-1%'"),
        ("accuracy=inf", "accuracy", "margin must be a finite number and must not be negative, got 'inf'"),
        ("accuracy=nan", "accuracy", "margin must be a finite number and must not be negative, got 'nan'"),
    ],
)
def test_a_bad_margin_names_where_which_key_and_what_to_write(spec, key, problem):
    with pytest.raises(ConfigError) as info:
        parse_margins(spec, "pyproject.toml [tool.tinyaccel]")
    assert (info.value.where, info.value.key, info.value.problem) == ("pyproject.toml [tool.tinyaccel]", key, problem)


def test_a_margin_spec_of_another_type_is_refused():
    with pytest.raises(ConfigError) as info:
        parse_margins(5, "model.toml")  # type: ignore[arg-type]
    assert (info.value.where, info.value.key, info.value.problem) == (
        "model.toml",
        "max_regression",
        'expected a string like "ns=10%,accuracy=0.5" or a table, got 5',
    )


def test_a_zero_margin_is_allowed():
    assert parse_margins("accuracy=0,cycles=0%,sqnr=0dB", "here") == {"accuracy": 0.0, "cycles": 0.0, "sqnr": 0.0}
    assert json.dumps(parse_margins({"ns": "0.5%"}, "here")) == '{"ns": 0.5}'
