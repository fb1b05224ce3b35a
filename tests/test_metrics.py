"""The plugin's own ROC AUC against scikit-learn's, the reference it replaces at run time."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from pytest_tinyaccel.metrics import roc_auc

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
