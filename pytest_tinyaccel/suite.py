"""The standard checks, parametrized over every model x target x mode x dtype.

Use them from any test module of your repository:

    from pytest_tinyaccel.suite import *  # noqa: F401,F403
"""

import pytest

__all__ = ["test_golden", "test_accuracy", "test_top5", "test_baseline", "test_upgrade_review"]


def test_golden(tinyaccel):
    """Outputs on the golden samples np.allclose to ONNX Runtime's."""
    tinyaccel.check_golden()


def test_accuracy(tinyaccel):
    """Quality on the first N test samples at or above the manifest's quality target."""
    tinyaccel.check_accuracy()


@pytest.mark.tinyaccel_task("classification")
def test_top5(tinyaccel):
    """Top-5 classes (in order) and probabilities of the golden samples as in the reference."""
    tinyaccel.check_top5()


@pytest.mark.tinyaccel_baseline
def test_baseline(tinyaccel):
    """With --tinyaccel-baseline: no metric worse than the baseline by more than its margin."""
    tinyaccel.check_baseline()


def test_upgrade_review(tinyaccel_upgrade_review):
    """After an ONNX Runtime upgrade: the stored goldens against the new version's outputs."""
    tinyaccel_upgrade_review.check()
