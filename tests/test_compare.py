"""The golden comparison itself, called directly: an infinity matches an equal infinity only."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_tinyaccel.goldens.compare import describe_mismatch


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
