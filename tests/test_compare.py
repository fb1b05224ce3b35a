"""The golden comparison itself, called directly: `describe_mismatch` (the np.allclose rule,
NaN and infinities, the exact tolerance boundary, zero tolerance, the message's figures and
worst elements, chunk by chunk) and `compare_top5` / `topk` (the Top-5 reference check)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pytest_tinyaccel.goldens import compare
from pytest_tinyaccel.goldens.compare import compare_top5, describe_mismatch
from pytest_tinyaccel.metrics import topk


def reference_message(name, obtained, expected, atol, rtol, worst=5):
    """The message describe_mismatch documents, computed on the whole arrays at once (the oracle)."""
    g, e = obtained.astype(np.float64).ravel(), expected.astype(np.float64).ravel()
    with np.errstate(invalid="ignore"):
        err = np.abs(g - e)
        ok = err <= atol + rtol * np.abs(e)
    inf = np.isinf(e)
    ok[inf] = g[inf] == e[inf]
    err[inf & ok] = 0.0
    if ok.all():
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(err == 0, 0.0, err / np.abs(e))

    def peak(values):
        if np.isnan(values).any():
            return "nan"
        return "inf" if np.isinf(values).any() else f"{values.max():.4g}"

    ranked = np.where(np.isnan(err), np.inf, err)
    rows = []
    for flat in np.argsort(-ranked, kind="stable")[:worst]:
        idx = [int(i) for i in np.unravel_index(flat, obtained.shape)]
        rows.append(f"{idx} {g[flat]:.7g} {e[flat]:.7g} {err[flat]:.3g} {rel[flat]:.3g}")
    bad = int((~ok).sum())
    nan = int(np.isnan(obtained).sum()) if obtained.dtype.kind == "f" else 0
    return (
        f"output '{name}' differs from the ONNX Runtime golden (atol={atol:g}, rtol={rtol:g})",
        f"  mismatched elements: {bad} / {g.size} ({100.0 * bad / g.size:.2f}%)",
        f"  max abs error: {peak(err)}   max rel error: {peak(rel)}",
        f"  obtained holds {nan} NaN value(s)" if nan else None,
        rows,
    )


def row(text):
    """A table row as 'index value value ...', numbers as tabulate prints them (format 'g')."""
    index, _, rest = text.strip().replace(", ", ",").partition("] ")
    return " ".join([index + "]", *(format(float(v), "g") for v in rest.split())])


def parsed(message):
    """describe_mismatch's message in the reference's shape: header lines, then the table rows."""
    lines = message.splitlines()
    start = lines.index("  worst elements:")
    head = lines[:start]
    return (*head[:3], head[3] if len(head) > 3 else None, [row(line) for line in lines[start + 3 :]])


def as_reference(ref):
    if ref is None:
        return None
    *head, rows = ref
    return (*head, [row(r) for r in rows])


values = st.one_of(
    st.floats(-4, 4, width=32),
    st.sampled_from([0.0, -0.0, 1.0, np.nan, np.inf, -np.inf, 1e-7, 1e30]),
)
tolerances = st.sampled_from([0.0, 1e-5, 0.25, 0.5, 1.0])


@given(
    pair=st.integers(1, 40).flatmap(
        lambda n: st.tuples(hnp.arrays(np.float64, n, elements=values), hnp.arrays(np.float64, n, elements=values))
    ),
    atol=tolerances,
    rtol=tolerances,
    chunk=st.sampled_from([1, 3, 7, 32 * 1024]),
    worst=st.integers(1, 6),
)
def test_the_message_is_the_whole_array_formula_and_none_exactly_when_allclose(pair, atol, rtol, chunk, worst):
    got, exp = pair
    original = compare._CHUNK
    compare._CHUNK = chunk  # several chunks: the streamed passes give the whole-array result
    try:
        message = describe_mismatch("y", got, exp, atol, rtol, worst=worst)
    finally:
        compare._CHUNK = original
    assert (message is None) == bool(np.allclose(got, exp, atol=atol, rtol=rtol))
    expected = as_reference(reference_message("y", got, exp, atol, rtol, worst))
    assert (None if message is None else parsed(message)) == expected


def test_nan_in_the_output_is_a_mismatch_counted_and_shown_first():
    exp = np.array([[0.5, 0.25], [1.0, 2.0]], np.float32)
    got = exp.copy()
    got[1, 0] = np.nan
    message = describe_mismatch("probs", got, exp, 1e-5, 1e-3)
    assert message is not None
    assert "mismatched elements: 1 / 4 (25.00%)" in message
    assert "max abs error: nan   max rel error: nan" in message
    assert "obtained holds 1 NaN value(s)" in message
    assert parsed(message)[-1][0].startswith("[1,0] nan 1 nan nan")


def test_nan_in_the_golden_never_matches_not_even_nan():
    exp = np.array([np.nan, 1.0])
    assert describe_mismatch("y", np.array([np.nan, 1.0]), exp, 1e-5, 1e-3) is not None
    message = describe_mismatch("y", np.array([0.0, 1.0]), exp, 1.0, 1.0)
    assert message is not None and "obtained holds" not in message


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_an_infinity_matches_the_same_infinity_only(sign):
    inf = sign * np.inf
    assert describe_mismatch("y", np.array([inf, 2.0]), np.array([inf, 2.0]), 1e-5, 1e-3) is None
    assert describe_mismatch("y", np.array([inf]), np.array([inf]), 0.0, 0.0) is None
    for got in (-inf, 1e30, 0.0, np.nan):
        message = describe_mismatch("y", np.array([got, 2.0]), np.array([inf, 2.0]), 1e-5, 1e-3)
        assert message is not None and "mismatched elements: 1 / 2" in message, got
    message = describe_mismatch("y", np.array([inf, 2.0]), np.array([1.0, 2.0]), 1e-5, 1e-3)
    assert message is not None and "max abs error: inf   max rel error: inf" in message


def test_a_matching_infinity_adds_no_error_to_the_message():
    message = describe_mismatch("y", np.array([np.inf, 3.0]), np.array([np.inf, 1.0]), 0.0, 0.0)
    assert message is not None
    assert "max abs error: 2   max rel error: 2" in message
    assert parsed(message)[-1] == ["[1] 3 1 2 2", "[0] inf inf 0 0"]
    message = describe_mismatch("y", np.array([-np.inf, 1.25, 1.0]), np.array([-np.inf, 1.0, 1.0]), 0.0, 0.0)
    assert "max abs error: 0.25   max rel error: 0.25" in message  # the matched infinity's error is 0, not more
    assert parsed(message)[-1] == ["[1] 1.25 1 0.25 0.25", "[0] -inf -inf 0 0", "[2] 1 1 0 0"]


@pytest.mark.parametrize(
    ("expected", "atol", "rtol", "limit"),
    [
        (2.0, 0.5, 0.25, 1.0),  # both terms: 0.5 + 0.25 * 2
        (4.0, 0.0, 0.5, 2.0),  # rtol alone
        (100.0, 1.0, 0.0, 1.0),  # atol alone
        (-8.0, 0.25, 0.125, 1.25),  # |expected|
    ],
)
def test_the_tolerance_boundary_is_inclusive_on_both_sides(expected, atol, rtol, limit):
    """|obtained - expected| == atol + rtol * |expected| passes (np.allclose's <=); a hair more fails."""
    exp = np.array([expected])
    for side in (1.0, -1.0):
        at = np.array([expected + side * limit])
        assert describe_mismatch("y", at, exp, atol, rtol) is None
        beyond = at + side * 2.0**-40  # the smallest step whose difference stays exact here
        message = describe_mismatch("y", beyond, exp, atol, rtol)
        assert message is not None and "mismatched elements: 1 / 1 (100.00%)" in message
    assert f"(atol={atol:g}, rtol={rtol:g})" in describe_mismatch("y", exp + 2 * limit, exp, atol, rtol)


def test_atol_and_rtol_are_not_interchangeable():
    exp = np.array([100.0])
    assert describe_mismatch("y", np.array([150.0]), exp, 0.0, 0.5) is None
    assert describe_mismatch("y", np.array([150.0]), exp, 0.5, 0.0) is not None
    assert describe_mismatch("y", np.array([100.5]), exp, 0.5, 0.0) is None
    assert describe_mismatch("y", np.array([100.5]), exp, 0.0, 0.004) is not None


def test_zero_tolerance_accepts_equal_values_only():
    exp = np.array([0.0, -0.0, 1.5, 1e-30], np.float32)
    assert describe_mismatch("y", exp.copy(), exp, 0.0, 0.0) is None
    assert describe_mismatch("y", -exp, exp, 0.0, 0.0) is not None  # 1.5 vs -1.5
    for i in range(exp.size):
        got = exp.copy()
        got[i] = np.nextafter(got[i], np.float32(1))
        message = describe_mismatch("y", got, exp, 0.0, 0.0)
        assert message is not None and "mismatched elements: 1 / 4" in message, i


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32])
def test_integer_outputs_must_match_exactly_with_the_default_tolerance(dtype):
    exp = np.array([0, 3, 100], dtype)
    assert describe_mismatch("y", exp.copy(), exp, 1e-5, 1e-3) is None
    got = exp.copy()
    got[1] += 1
    message = describe_mismatch("y", got, exp, 1e-5, 1e-3)
    assert message is not None
    assert "max abs error: 1   max rel error: 0.3333" in message
    assert "NaN" not in message
    # int8 wraps in its own type; the comparison is in float64, so -128 vs 127 is 255 apart
    if dtype == np.int8:
        message = describe_mismatch("y", np.array([-128], dtype), np.array([127], dtype), 1e-5, 1e-3)
        assert "max abs error: 255" in message


def test_int8_minimum_matches_itself():
    """|-128| in float64 is 128: in int8 it would wrap to -128 and make the limit negative."""
    exp = np.array([-128, 127, 0], np.int8)
    assert describe_mismatch("y", exp.copy(), exp, 1e-5, 1e-3) is None
    assert describe_mismatch("y", exp.astype(np.int32), exp.astype(np.int32), 0.0, 0.1) is None


def test_nan_inf_and_zeros_raise_no_numpy_warning():
    """A user's run shows no RuntimeWarning from the comparison, whatever the outputs hold."""
    exp = np.array([0.0, np.inf, -np.inf, 1.0, 0.0, np.nan])
    got = np.array([0.0, np.inf, 1.0, np.nan, 2.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        message = describe_mismatch("y", got, exp, 0.0, 0.0)
        assert describe_mismatch("y", exp[:2], exp[:2], 0.0, 0.0) is None
    assert "mismatched elements: 4 / 6" in message


def test_max_rel_error_skips_exact_zeros():
    """An exactly-zero element that matches (common in int8 probabilities) has no relative error:
    the message gives the largest finite one, not nan."""
    exp = np.array([0.0, 0.0, 2.0, 4.0], np.float32)
    got = np.array([0.0, 0.0, 3.0, 4.0], np.float32)
    message = describe_mismatch("probs", got, exp, 0.0, 0.0)
    assert "max abs error: 1   max rel error: 0.5" in message
    rows = parsed(message)[-1]
    assert rows[0] == "[2] 3 2 1 0.5"
    assert rows[1:] == ["[0] 0 0 0 0", "[1] 0 0 0 0", "[3] 4 4 0 0"]
    # a zero expected with a non-zero obtained value is an infinite relative error
    message = describe_mismatch("probs", np.array([0.5, 0.0]), np.array([0.0, 0.0]), 0.0, 0.0)
    assert "max abs error: 0.5   max rel error: inf" in message


def test_message_counts_and_the_worst_elements_by_index():
    exp = np.zeros((2, 3, 4))
    got = exp.copy()
    got[0, 1, 2] = 0.5
    got[1, 2, 3] = -2.0
    got[1, 0, 0] = 0.5
    message = describe_mismatch("features", got, exp, 0.1, 0.0, worst=2)
    assert message.splitlines()[:3] == [
        "output 'features' differs from the ONNX Runtime golden (atol=0.1, rtol=0)",
        "  mismatched elements: 3 / 24 (12.50%)",
        "  max abs error: 2   max rel error: inf",
    ]
    assert parsed(message)[-1] == ["[1,2,3] -2 0 2 inf", "[0,1,2] 0.5 0 0.5 inf"]
    assert "index" in message and "obtained" in message and "expected" in message


def test_the_table_shows_five_worst_elements_by_default_under_its_headers():
    exp = np.zeros(8)
    got = np.arange(1.0, 9.0)
    message = describe_mismatch("y", got, exp, 0.0, 0.0)
    lines = message.splitlines()
    assert lines[3] == "  worst elements:"
    assert lines[4].split() == ["index", "obtained", "expected", "abs", "err", "rel", "err"]
    assert parsed(message)[-1] == [row(f"[{i}] {i + 1} 0 {i + 1} inf") for i in (7, 6, 5, 4, 3)]


def test_worst_elements_across_chunks_keep_ties_in_index_order():
    exp = np.zeros(10 * 32 * 1024 + 5, np.float32)
    got = exp.copy()
    for i in (3, 40_000, 70_000, 200_000, 300_000, exp.size - 1):
        got[i] = 1.0
    got[100_000] = 3.0
    message = describe_mismatch("y", got, exp, 0.0, 0.0, worst=4)
    assert parsed(message)[-1] == ["[100000] 3 0 3 inf", "[3] 1 0 1 inf", "[40000] 1 0 1 inf", "[70000] 1 0 1 inf"]
    assert f"mismatched elements: 7 / {exp.size} (0.00%)" in message


def test_a_shape_difference_is_named_before_any_value():
    message = describe_mismatch("y", np.zeros((1, 10)), np.zeros((1, 12)), 1e-5, 1e-3)
    assert message == "output 'y': shape [1, 10] does not match the golden's [1, 12]"
    assert describe_mismatch("y", np.zeros((2, 5)), np.zeros((10,)), 1.0, 1.0) is not None


# --------------------------------------------------------------------------- Top-k and Top-5


def test_topk_is_largest_first_with_ties_by_class_index():
    probs = np.array([[0.1, 0.3, 0.3, 0.05, 0.2, 0.05], [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]], np.float32)
    classes, values = topk(probs, 3)
    assert classes.tolist() == [[1, 2, 4], [2, 0, 1]]
    assert values.tolist() == np.float32([[0.3, 0.3, 0.2], [1.0, 0.0, 0.0]]).tolist()
    classes, _ = topk(probs.reshape(2, 1, 6), 1)  # per sample, over the flattened output
    assert classes.tolist() == [[1], [2]]


def label(c: int) -> str:
    return f"class{c}"


REFERENCE = [[[2, 0.6], [0, 0.2], [3, 0.1], [1, 0.06], [4, 0.04]]]


def test_top5_equal_to_the_reference_within_tolerance_passes():
    probs = np.array([[0.2, 0.06, 0.6, 0.1, 0.04, 0.0]])
    assert compare_top5(REFERENCE, probs, 1e-6, label) == (0, "")
    assert compare_top5(REFERENCE, probs + 0.009, 0.01, label) == (0, "")


def test_top5_value_beyond_tolerance_is_one_differing_entry_with_both_sides():
    probs = np.array([[0.2, 0.06, 0.62, 0.1, 0.04, 0.0]])
    bad, table = compare_top5(REFERENCE, probs, 0.01, label)
    assert bad == 1
    lines = table.splitlines()
    assert lines[0].split() == ["sample", "rank", "reference", "Top", "5", "obtained", "Top", "5"]
    assert lines[2].split() == ["0", "1", "0.600000", "class2", "0.620000", "class2", "<--", "differs"]
    assert lines[3].split() == ["0", "2", "0.200000", "class0", "0.200000", "class0"]
    assert len(lines) == 2 + 5


def test_top5_class_swap_is_accepted_only_between_classes_within_tolerance():
    # classes 1 and 4 swap ranks: their reference probabilities are 0.02 apart
    probs = np.array([[0.2, 0.04, 0.6, 0.1, 0.06, 0.0]])
    assert compare_top5(REFERENCE, probs, 0.03, label)[0] == 0
    bad, table = compare_top5(REFERENCE, probs, 0.01, label)
    assert bad == 2 and table.count("<-- differs") == 2
    # a class outside the reference Top-5 takes rank 5: compared with the 5th probability
    outside = np.array([[0.2, 0.06, 0.6, 0.1, 0.0, 0.045]])
    assert compare_top5(REFERENCE, outside, 0.01, label)[0] == 0
    assert compare_top5(REFERENCE, outside, 0.004, label)[0] == 1


def test_top5_tolerance_boundaries_are_inclusive():
    """Differences of exactly `tolerance` (binary fractions: no rounding) are accepted, a hair more is not."""
    reference = [[[0, 0.5], [1, 0.25], [2, 0.125], [3, 0.0625], [4, 0.03125]]]
    probs = np.array([[0.75, 0.25, 0.125, 0.0625, 0.03125, 0.0]])
    assert compare_top5(reference, probs, 0.25, label)[0] == 0
    assert compare_top5(reference, probs, 0.25 - 2**-30, label)[0] == 1
    # classes 0 and 1 exchanged: their reference probabilities are exactly 0.25 apart
    swapped = np.array([[0.375, 0.5, 0.125, 0.0625, 0.03125, 0.0]])
    assert compare_top5(reference, swapped, 0.25, label)[0] == 0
    assert compare_top5(reference, swapped, 0.25 - 2**-30, label)[0] == 2


def test_top5_counts_every_sample_and_shows_only_the_differing_ones():
    reference = REFERENCE * 3
    probs = np.array([[0.2, 0.06, 0.6, 0.1, 0.04, 0.0]] * 3)
    probs[1] = [0.6, 0.06, 0.2, 0.1, 0.04, 0.0]  # classes 0 and 2 exchanged
    probs[2, 3] = 0.13
    bad, table = compare_top5(reference, probs, 0.01, label)
    assert bad == 3
    samples = [line.split()[0] for line in table.splitlines()[2:]]
    assert samples == ["1"] * 5 + ["2"] * 5
    assert "0.600000 class0" in table and "0.130000 class3" in table
