"""The quality metrics (metrics.py) by hand: Top-1/Top-5 accuracy, the anomaly score and its AUC,
which labels are refused and why, and how the tables print a quality figure."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_tinyaccel.metrics import anomaly_scores, check_labels, format_quality, quality, roc_auc, topk

PROBS = np.array(
    [
        [0.10, 0.50, 0.20, 0.05, 0.05, 0.04, 0.03, 0.03],  # top1 1, top5 1 2 0 3 4
        [0.30, 0.05, 0.05, 0.05, 0.05, 0.05, 0.25, 0.20],  # top1 0, top5 0 6 7 1 2
        [0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.93],  # top1 7, top5 7 0 1 2 3
    ]
)


def test_top1_and_top5_accuracy_by_hand():
    labels = np.array([1, 7, 5])
    assert quality("top1", PROBS, labels) == pytest.approx(1 / 3)
    assert quality("top5", PROBS, labels) == pytest.approx(2 / 3)  # 5 is outside the third sample's Top-5
    assert quality("top1", PROBS, np.array([[1], [0], [7]])) == 1.0  # labels as a column
    assert quality("top1", PROBS, np.array([[1], [7], [0]])) == pytest.approx(1 / 3)  # each against its own sample
    assert quality("top1", PROBS, np.array([2, 6, 0])) == 0.0  # every label second: not a Top-1 hit
    assert quality("top5", PROBS, np.array([5, 3, 4])) == 0.0  # every label sixth: not a Top-5 hit
    assert quality("top5", PROBS.reshape(3, 2, 4), np.array([4, 2, 3])) == 1.0  # outputs flattened per sample
    assert quality("top1", PROBS, np.array([1.0, 0.0, 6.0])) == pytest.approx(2 / 3)


def test_topk_ties_go_to_the_lower_class():
    classes, values = topk(PROBS, 5)
    assert classes.tolist() == [[1, 2, 0, 3, 4], [0, 6, 7, 1, 2], [7, 0, 1, 2, 3]]
    assert values[1].tolist() == [0.30, 0.25, 0.20, 0.05, 0.05]
    assert topk(PROBS)[0].shape == (3, 5) and topk(PROBS, 1)[0].tolist() == [[1], [0], [7]]


def test_anomaly_score_is_the_mean_squared_reconstruction_error_per_sample():
    x = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    r = np.array([[1.0, 2.0, 3.0, 2.0], [1.0, 1.0, -1.0, 1.0]], np.float32)
    scores = anomaly_scores(x.reshape(2, 2, 2), r)
    assert scores.dtype == np.float64 and scores.tolist() == [1.0, 1.0]
    assert anomaly_scores(x, x).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match=r"^reconstruction has 3 values per sample, input has 4$"):
        anomaly_scores(x, r[:, :3])


def test_roc_auc_by_hand_with_a_tie():
    labels = np.array([0, 0, 1, 1, 0])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.35])  # pairs (pos > neg): 0.35 vs {0.1: 1, 0.4: 0, 0.35: 0.5}; 0.8: 3
    assert roc_auc(labels, scores) == pytest.approx((1 + 0 + 0.5 + 3) / 6)
    assert roc_auc(labels, -scores) == pytest.approx(1 - (1 + 0 + 0.5 + 3) / 6)
    assert roc_auc(np.array([[1], [0]]), np.array([[0.9], [0.1]])) == 1.0
    assert isinstance(roc_auc(labels, scores), float)


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 1], [0.1, np.nan], "anomaly scores contain NaN or Inf; the model output is not finite"),
        ([0, 1], [np.inf, 0.1], "anomaly scores contain NaN or Inf; the model output is not finite"),
        ([1, 1], [0.1, 0.2], "AUC needs both normal (0) and anomalous (1) samples among the first N"),
        ([0, 0], [0.1, 0.2], "AUC needs both normal (0) and anomalous (1) samples among the first N"),
    ],
)
def test_roc_auc_refuses_what_has_no_auc(labels, scores, message):
    with pytest.raises(ValueError) as info:
        roc_auc(np.array(labels), np.array(scores))
    assert str(info.value) == message


def test_auc_quality_of_a_reconstruction_and_of_a_score_output():
    x = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    recon = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])  # errors 0, 1, 1
    labels = np.array([0, 1, 0])
    assert quality("auc", recon, labels, x) == pytest.approx(0.75)
    assert quality("auc", np.array([0.2, 0.9, 0.1]), labels, role="score") == 1.0
    assert quality("auc", np.array([[0.2], [0.9], [0.1]]), labels, role="score") == 1.0
    with pytest.raises(ValueError, match=r"^a score output holds one value per sample, got shape \[3, 2\]$"):
        quality("auc", recon, labels, x, role="score")
    with pytest.raises(ValueError, match=r"^AUC needs the inputs to score reconstruction error$"):
        quality("auc", recon, labels)


@pytest.mark.parametrize(
    ("metric", "labels", "classes", "problem"),
    [
        ("top1", np.zeros((4, 3)), 3, "labels must be one value per sample, shape [N]; got [4, 3] (one-hot? store "
         "the class index: y.argmax(1))"),
        ("top1", np.zeros((4, 1)), 3, "labels must be one value per sample, shape [N]; got [4, 1]"),
        ("top1", np.zeros((4, 2)), 3, "labels must be one value per sample, shape [N]; got [4, 2] (one-hot? store "
         "the class index: y.argmax(1))"),
        ("top1", np.zeros((2, 2, 2)), 3, "labels must be one value per sample, shape [N]; got [2, 2, 2]"),
        ("top1", np.array([0.0, 1.5]), 3, "labels must be integers (class index, or 0/1 for anomaly); found "
         "non-integer values"),
        ("top1", np.array([0.0, np.nan]), 3, "labels must be integers (class index, or 0/1 for anomaly); found "
         "non-integer values"),
        ("top1", np.array(["a", "b"]), 3, "labels must be integers, got dtype <U1"),
        ("top1", np.array([0, 3, 5, -1]), 3, "3 label(s) outside the model's 3 classes (e.g. 3); labels are class "
         "indices 0..classes-1"),
        ("auc", np.array([0, 1, 2, 7, 2]), 1, "anomaly labels must be 0 (normal) or 1 (anomaly); found [2, 7]"),
        ("auc", np.array([0, 1, 2, 3, 4, 5, 6, -1]), 1, "anomaly labels must be 0 (normal) or 1 (anomaly); found "
         "[-1, 2, 3, 4, 5]"),
    ],
)  # fmt: skip
def test_labels_that_cannot_be_scored_are_refused_with_why(metric, labels, classes, problem):
    assert check_labels(metric, labels, classes) == problem


@pytest.mark.parametrize(
    ("metric", "labels", "classes"),
    [
        ("top1", np.array([0, 2, 1]), 3),
        ("top5", np.array([0.0, 9.0]), 10),
        ("top1", np.array([True, False]), 2),
        ("top1", np.array([0, 255], np.uint8), 256),
        ("auc", np.array([0, 1, 1]), 1),
        ("auc", np.array([0.0, 1.0]), 1),
    ],
)
def test_labels_that_fit_pass(metric, labels, classes):
    assert check_labels(metric, labels, classes) is None


def test_quality_figures_as_the_tables_print_them():
    assert format_quality("top1", 0.97449) == "97.4% (Top 1)"
    assert format_quality("top5", 1.0) == "100.0% (Top 5)"
    assert format_quality("auc", 0.91249) == "0.912 (AUC)"
