"""Golden comparison throughput on large outputs (elements per second)."""

from __future__ import annotations

import numpy as np

from conftest import record_rate
from pytest_tinyaccel.goldens.compare import describe_mismatch

N = 10_000_000


def test_compare_matching(benchmark):
    rng = np.random.default_rng(0)
    expected = rng.standard_normal(N, dtype=np.float32).reshape(1000, -1)
    obtained = expected + np.float32(1e-7)
    assert benchmark(describe_mismatch, "out", obtained, expected, 1e-5, 1e-3) is None
    record_rate(
        "golden comparison, all within tolerance",
        f"{N / benchmark.stats.stats.median / 1e6:.0f} M elements/s ({N:,} float32 elements)",
    )


def test_compare_mismatching(benchmark):
    rng = np.random.default_rng(1)
    expected = rng.standard_normal(N, dtype=np.float32).reshape(1000, -1)
    obtained = expected.copy()
    obtained[::7] += 0.1
    assert "mismatched elements" in benchmark(describe_mismatch, "out", obtained, expected, 1e-5, 1e-3)
    record_rate(
        "golden comparison, 14% mismatching (with diagnosis)",
        f"{N / benchmark.stats.stats.median / 1e6:.0f} M elements/s ({N:,} float32 elements)",
    )
