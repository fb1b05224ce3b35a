"""Quality metrics on model outputs: Top-1, Top-5, and AUC of reconstruction error."""

from __future__ import annotations

import numpy as np

LABELS = {"top1": "Top 1", "top5": "Top 5", "auc": "AUC"}


def topk(probs: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Classes and values of the k largest outputs per row, largest first; ties by class index."""
    flat = probs.reshape(len(probs), -1)
    order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(flat, order, axis=1)


_ROWS = 64
"""Samples per block of `anomaly_scores`: two float64 blocks stay in a core's cache."""


def anomaly_scores(x: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """Mean squared reconstruction error per sample (MLPerf Tiny's AD score), in float64. Block by block of
    samples: each sample's mean is the same as over whole arrays, without two full-size float64 copies."""
    x = x.reshape(len(x), -1)
    r = reconstruction.reshape(len(reconstruction), -1)
    if x.shape != r.shape:
        raise ValueError(f"reconstruction has {r.shape[1]} values per sample, input has {x.shape[1]}")
    scores = np.empty(len(x), np.float64)
    for start in range(0, len(x), _ROWS):
        error = x[start : start + _ROWS].astype(np.float64) - r[start : start + _ROWS].astype(np.float64)
        scores[start : start + _ROWS] = np.mean(error**2, axis=1)
    return scores


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of `scores` (higher = more anomalous) for 0/1 `labels`: the
    Mann-Whitney statistic with tied scores at their mean rank, the value scikit-learn's
    roc_auc_score gives, without the second of import time scikit-learn costs every run."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not np.isfinite(scores).all():
        raise ValueError("anomaly scores contain NaN or Inf; the model output is not finite")
    positive = np.asarray(labels).reshape(-1) == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        raise ValueError("AUC needs both normal (0) and anomalous (1) samples among the first N")
    _, tie_group, tie_count = np.unique(scores, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(tie_count)
    mean_rank = last_rank - (tie_count - 1) / 2.0  # 1-based rank, averaged over the ties
    rank_sum = mean_rank[tie_group][positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def check_labels(metric: str, labels: np.ndarray, n_classes: int) -> str | None:
    """What is wrong with `labels` for `metric` (None when they fit): class indices in
    [0, n_classes) for Top-k, 0/1 for AUC; never truncated, broadcast or counted as misses."""
    if labels.ndim != 1:
        hint = " (one-hot? store the class index: y.argmax(1))" if labels.ndim == 2 and labels.shape[1] > 1 else ""
        return f"labels must be one value per sample, shape [N]; got {list(labels.shape)}{hint}"
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or (labels != np.round(labels)).any():
            return "labels must be integers (class index, or 0/1 for anomaly); found non-integer values"
    if labels.dtype.kind not in "biuf":
        return f"labels must be integers, got dtype {labels.dtype}"
    values = labels.astype(np.int64)
    if metric == "auc":  # not np.unique: its first call imports numpy.ma
        odd = sorted(set(values[(values != 0) & (values != 1)].tolist()))
        return f"anomaly labels must be 0 (normal) or 1 (anomaly); found {odd[:5]}" if odd else None
    outside = values[(values < 0) | (values >= n_classes)]
    if outside.size:
        return (
            f"{outside.size} label(s) outside the model's {n_classes} classes (e.g. {int(outside[0])}); "
            "labels are class indices 0..classes-1"
        )
    return None


def quality(
    metric: str, output: np.ndarray, labels: np.ndarray, x: np.ndarray | None = None, role: str = "reconstruction"
) -> float:
    """The model's quality on these samples: accuracy (fraction) or ROC AUC (labels checked by
    `check_labels`). AUC scores a `reconstruction` output by its error against `x`, a `score`
    output (one value per sample, higher = more anomalous) as it is."""
    labels = labels.reshape(-1).astype(np.int64)
    if metric == "auc":
        if role == "score":
            if output.size != len(output):
                raise ValueError(f"a score output holds one value per sample, got shape {list(output.shape)}")
            return roc_auc(labels, output.reshape(-1))
        if x is None:
            raise ValueError("AUC needs the inputs to score reconstruction error")
        return roc_auc(labels, anomaly_scores(x, output))
    k = {"top1": 1, "top5": 5}[metric]
    classes, _ = topk(output, k)
    return float(np.mean((classes == labels[:, None]).any(axis=1)))


def format_quality(metric: str, value: float) -> str:
    """As the profiling tables print it: '97.4% (Top 1)' or '0.912 (AUC)'."""
    if metric == "auc":
        return f"{value:.3f} ({LABELS[metric]})"
    return f"{100 * value:.1f}% ({LABELS[metric]})"
