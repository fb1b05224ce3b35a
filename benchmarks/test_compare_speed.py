"""Golden comparison throughput on large outputs (elements per second; target: 100 M/s both ways)."""

from __future__ import annotations

import numpy as np

from conftest import record_rate
from pytest_tinyaccel.goldens.compare import describe_mismatch

N = 10_000_000
TARGET = 100  # M elements/s


def _rate(seconds: float) -> str:
    rate = N / seconds / 1e6
    verdict = "ok" if rate >= TARGET else "OVER"
    return f"{rate:.0f} M elements/s ({N:,} float32 elements) [target >= {TARGET} M/s: {verdict}]"


def test_compare_matching(benchmark):
    rng = np.random.default_rng(0)
    expected = rng.standard_normal(N, dtype=np.float32).reshape(1000, -1)
    obtained = expected + np.float32(1e-7)
    assert benchmark(describe_mismatch, "out", obtained, expected, 1e-5, 1e-3) is None
    record_rate("golden comparison, all within tolerance", _rate(benchmark.stats.stats.median))


def test_compare_mismatching(benchmark):
    rng = np.random.default_rng(1)
    expected = rng.standard_normal(N, dtype=np.float32).reshape(1000, -1)
    obtained = expected.copy()
    obtained[::7] += 0.1
    assert "mismatched elements" in benchmark(describe_mismatch, "out", obtained, expected, 1e-5, 1e-3)
    record_rate("golden comparison, 14% mismatching (with diagnosis)", _rate(benchmark.stats.stats.median))
