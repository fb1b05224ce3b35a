"""The plugin's own ROC AUC against scikit-learn's, the reference it replaces at run time."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from pytest_tinyaccel.metrics import anomaly_scores, roc_auc

# Scores drawn from few distinct values, so ties (between classes too) are the common case.
SCORES = st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, -3.5, 1e-9]), min_size=2, max_size=60)


@given(data=st.data(), scores=SCORES)
def test_roc_auc_equals_scikit_learn_with_ties(data, scores):
    labels = data.draw(st.lists(st.integers(0, 1), min_size=len(scores), max_size=len(scores)))
    labels[0], labels[1] = 0, 1  # both classes present
    assert roc_auc(np.array(labels), np.array(scores)) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_on_the_bundled_anomaly_scores_equals_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 1000)
    scores = rng.gamma(2.0, 1.0, 1000).astype(np.float32) + labels * 0.5
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert roc_auc(labels, -scores) == pytest.approx(1 - roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "needs both normal (0) and anomalous (1)"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "NaN or Inf"),
    ],
)
def test_roc_auc_refuses_what_has_no_auc(labels, scores, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        roc_auc(np.array(labels), np.array(scores))


@pytest.mark.parametrize("samples", [1, 64, 65, 1000])
def test_anomaly_scores_block_by_block_equal_the_whole_array_formula(samples):
    """The AUC's scores, computed in blocks of samples, are bit for bit the mean over whole float64 arrays,
    on more samples than a block too (float16 data, as the bundled ad model's)."""
    rng = np.random.default_rng(samples)
    x = rng.standard_normal((samples, 5, 128)).astype(np.float16)
    reconstruction = x.astype(np.float32) + rng.standard_normal(x.shape).astype(np.float32) * np.float32(0.1)
    whole = np.mean((x.reshape(samples, -1).astype(np.float64) - reconstruction.reshape(samples, -1)) ** 2, axis=1)
    scores = anomaly_scores(x, reconstruction)
    assert scores.dtype == np.float64 and scores.shape == (samples,)
    assert np.array_equal(scores, whole)
