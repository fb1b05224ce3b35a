"""The error statistics of one tensor against its reference (errorstats.py), figures worked out by
hand: max abs, RMSE, SQNR, cosine, the share within 1 LSB, the corner cases (NaN, zeros, empty,
shape), and their JSON form and one-line description."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from pytest_tinyaccel import errorstats
from pytest_tinyaccel.errorstats import ErrorStats, error_stats, format_db


def test_figures_of_a_small_float_tensor_by_hand():
    s = error_stats(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), np.array([[1.0, 2.0], [3.0, 5.0]], np.float32))
    assert s is not None
    assert (s.max_abs, s.rmse, s.elements, s.within_1lsb) == (1.0, 0.5, 4, None)
    assert s.sqnr_db == pytest.approx(10 * math.log10(39.0))  # 1 + 4 + 9 + 25 over the one error squared
    assert s.cosine == pytest.approx(34.0 / math.sqrt(30.0 * 39.0))


def test_integer_tensors_count_the_elements_within_one_lsb():
    got = np.array([10, 11, 12, -128, 127], np.int8)
    exp = np.array([10, 10, 14, 127, 126], np.int8)  # differences 0, 1, 2, 255 (in float64, not wrapped), 1
    s = error_stats(got, exp)
    assert s is not None
    assert s.within_1lsb == pytest.approx(3 / 5) and s.max_abs == 255.0
    assert s.rmse == pytest.approx(math.sqrt((1 + 4 + 255**2 + 1) / 5))
    assert error_stats(np.array([1, 2], np.uint8), np.array([1, 2], np.int32)).within_1lsb == 1.0
    assert error_stats(np.array([True, False]), np.array([True, True])).within_1lsb == 1.0
    assert error_stats(np.array([1, 2], np.int8), np.array([1.0, 2.0])).within_1lsb is None  # mixed: not integer


def test_equal_tensors_are_exact_zeros_included():
    for a in (np.zeros(5, np.float32), np.arange(6, dtype=np.int8).reshape(2, 3)):
        s = error_stats(a, a.copy())
        assert s is not None
        assert (s.max_abs, s.rmse, s.sqnr_db, s.cosine) == (0.0, 0.0, math.inf, 1.0)
        assert s.within_1lsb == (None if a.dtype.kind == "f" else 1.0) and s.elements == a.size


def test_nan_anywhere_makes_every_figure_nan():
    got = np.array([1.0, np.nan, 3.0])
    s = error_stats(got, np.array([1.0, 2.0, 3.0]))
    assert s is not None and s.elements == 3 and s.within_1lsb is None
    assert all(math.isnan(v) for v in (s.max_abs, s.rmse, s.sqnr_db, s.cosine))
    big = np.zeros(3 * errorstats._CHUNK)
    big[-1] = np.nan  # in the last chunk only
    s = error_stats(big, np.zeros_like(big))
    assert s is not None and math.isnan(s.sqnr_db) and math.isnan(s.max_abs)


def test_one_side_all_zeros_has_no_direction():
    s = error_stats(np.zeros(3), np.array([1.0, -2.0, 2.0]))
    assert s is not None
    assert (
        math.isnan(s.cosine)
        and s.sqnr_db == pytest.approx(0.0)
        and s.max_abs == 2.0
        and s.rmse == pytest.approx(math.sqrt(3))
    )
    s = error_stats(np.array([1.0, 1.0]), np.zeros(2))
    assert s is not None and math.isnan(s.cosine) and s.sqnr_db == -math.inf


def test_the_cosine_never_exceeds_one_and_keeps_its_sign():
    a = np.full(1000, 0.1, np.float32)
    b = a.copy()
    b[0] = np.nextafter(b[0], np.float32(1))
    s = error_stats(a, b)
    assert s is not None and s.cosine <= 1.0 and s.cosine == pytest.approx(1.0)
    s = error_stats(-a, a)
    assert s is not None and s.cosine == pytest.approx(-1.0) and s.sqnr_db == pytest.approx(10 * math.log10(1 / 4))


def test_chunks_give_the_whole_array_figures():
    rng = np.random.default_rng(5)
    exp = rng.standard_normal(17 * 7711)  # 2 chunks and a part
    got = exp + rng.standard_normal(exp.size) * 0.01
    got[errorstats._CHUNK + 3] += 5.0  # the largest error, in the second chunk
    s = error_stats(got.astype(np.float32).reshape(-1, 17), exp.astype(np.float32).reshape(-1, 17))
    g, e = got.astype(np.float32).astype(np.float64), exp.astype(np.float32).astype(np.float64)
    assert s is not None and s.elements == exp.size
    assert s.max_abs == pytest.approx(np.abs(g - e).max(), rel=1e-12)
    assert s.rmse == pytest.approx(math.sqrt(np.mean((g - e) ** 2)), rel=1e-9)
    assert s.sqnr_db == pytest.approx(10 * math.log10(np.sum(e * e) / np.sum((g - e) ** 2)), rel=1e-9)
    assert s.cosine == pytest.approx(np.dot(g, e) / math.sqrt(np.dot(g, g) * np.dot(e, e)), rel=1e-12)


def test_empty_tensors_and_other_shapes():
    s = error_stats(np.zeros(0, np.int8), np.zeros(0, np.int8))
    assert s is not None and (s.rmse, s.within_1lsb, s.elements, s.sqnr_db) == (0.0, 1.0, 0, math.inf)
    assert error_stats(np.zeros((2, 3)), np.zeros((3, 2))) is None
    assert error_stats(np.zeros(6), np.zeros((1, 6))) is None


def test_json_form_round_trips_non_finite_figures_as_strings():
    s = ErrorStats(0.5, 0.25, math.inf, math.nan, 0.75, 8)
    data = s.to_dict()
    assert data == {
        "max_abs": 0.5,
        "rmse": 0.25,
        "sqnr_db": "inf",
        "cosine": "nan",
        "within_1lsb": 0.75,
        "elements": 8,
    }
    back = ErrorStats.from_dict({**data, "unknown": 1})
    assert (back.max_abs, back.rmse, back.sqnr_db, back.within_1lsb, back.elements) == (0.5, 0.25, math.inf, 0.75, 8)
    assert math.isnan(back.cosine)
    assert ErrorStats(1.0, 1.0, -math.inf, 1.0).to_dict()["sqnr_db"] == "-inf"
    assert ErrorStats.from_dict({"max_abs": 1, "rmse": 2, "sqnr_db": 3, "cosine": 4}) == ErrorStats(1, 2, 3, 4)


@pytest.mark.parametrize("key", ["max_abs", "rmse", "sqnr_db", "cosine"])
@pytest.mark.parametrize("bad", [None, True, [1.0], {"x": 1}])
def test_a_figure_that_is_not_a_number_is_refused_by_name(key, bad):
    data = {"max_abs": 1.0, "rmse": 1.0, "sqnr_db": 1.0, "cosine": 1.0, key: bad}
    with pytest.raises(TypeError, match=rf"^error statistics: {key} is not a number$"):
        ErrorStats.from_dict(data)
    del data[key]
    with pytest.raises(TypeError, match=rf"^error statistics: {key} is not a number$"):
        ErrorStats.from_dict(data)


def test_description_and_decibels():
    assert ErrorStats(0.0123, 0.00412, 41.23, 0.999912).describe() == (
        "max abs 0.0123, RMSE 0.00412, SQNR 41.2 dB, cosine 0.999912"
    )
    assert ErrorStats(2.0, 0.5, math.inf, 1.0, 0.9876, 10).describe() == (
        "max abs 2, RMSE 0.5, SQNR inf dB (exact), cosine 1, 98.8% within 1 LSB"
    )
    assert (format_db(math.inf), format_db(-3.04), format_db(-math.inf)) == ("inf dB (exact)", "-3.0 dB", "-inf dB")


def test_small_tensors_have_a_cosine_too():
    """Sums of squares below 1 are still a direction: only an all-zero side has none."""
    s = error_stats(np.array([0.5, 0.0]), np.array([0.4, 0.1]))
    assert s is not None and s.cosine == pytest.approx(0.2 / math.sqrt(0.25 * 0.17))
    s = error_stats(np.array([0.3, 0.4]), np.array([0.0, 0.5]))
    assert s is not None and s.cosine == pytest.approx(0.2 / math.sqrt(0.25 * 0.25))


def test_integer_counts_within_one_lsb_add_up_over_chunks():
    n = 3 * errorstats._CHUNK + 5
    exp = np.zeros(n, np.int32)
    got = exp.copy()
    got[::7] = 3  # outside 1 LSB, in every chunk
    s = error_stats(got, exp)
    assert s is not None and s.within_1lsb == pytest.approx(1 - len(got[::7]) / n)


def test_zeros_raise_no_numpy_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert error_stats(np.ones(3), np.zeros(3)).sqnr_db == -math.inf
        assert math.isnan(error_stats(np.zeros(3), np.ones(3)).cosine)
        assert error_stats(np.zeros(3), np.zeros(3)).sqnr_db == math.inf
