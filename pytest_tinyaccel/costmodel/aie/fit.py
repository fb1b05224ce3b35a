"""Fitting per-kernel-class parameters to logged exposed cycles.

For each class and dtype with samples, find ``overhead > 0`` and
``cycles_per[f] >= 0`` so that ``overhead + sum(cycles_per[f] * features[f])``
matches the samples' exposed cycles in *relative* terms: a sample's residual is
``log(predicted) - log(measured)``, so a 40-cycle concat and a 300,000-cycle
convolution weigh the same.

* **Replicas count once.** The parts of one layer, and repeated identical layers,
  are the same kernel with the same arguments in the same graph: their samples
  share one unit of weight.
* **Robust.** The loss is soft-L1 (SciPy's `least_squares`), so the few samples
  the exposed-cycle rule attributes wrongly (a kernel whose latest-finishing
  predecessor was on a parallel branch) do not drag the fit.
* **Shrinkage of the overhead.** A class whose samples have one or two sizes
  cannot separate overhead from rate. Each class's overhead is therefore pulled
  towards its *family's* (compute: conv, conv1x1, dwconv, gemm; data movement:
  the rest), fitted first over all the family's samples of that dtype with one
  shared overhead and per-class rates. The pull weighs as much as one sample.

Parameters are fitted as logarithms (hence positive); a feature that is zero in
every sample of a class gets coefficient 0. SciPy comes with scikit-learn, a
core dependency; it is imported here only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

import numpy as np

from .calibration import CLASSES, COMPUTE, Calibration, KernelParams, complete
from .logs import Sample

SOFT_L1_SCALE = 0.3
"""Residuals (natural log of the ratio) beyond about this size count linearly, not squared."""
PRIOR_WEIGHT = 1.0
"""Weight of the pull of a class's log-overhead towards its family's (one sample's worth)."""
PULL = 1e-3
"""Weight of the pull of the rates towards their starting point (breaks exact ties)."""


def _weights(samples: list[Sample]) -> np.ndarray:
    count = Counter((s.graph, s.kernel, s.args) for s in samples)
    return np.array([1.0 / count[(s.graph, s.kernel, s.args)] for s in samples])


def _solve(
    design: list[np.ndarray],
    y: np.ndarray,
    w: np.ndarray,
    prior: tuple[float, float] | None = None,
) -> np.ndarray:
    """Fit log-parameters: one shared overhead (column 0 of every block) + the columns of
    each block of the design; returns exp(parameters). `prior` = (log overhead, weight)."""
    from scipy.optimize import least_squares, nnls

    x = np.vstack(design)
    start, _ = nnls(x * (np.sqrt(w) / y)[:, None], np.sqrt(w))
    start = np.maximum(start, 1e-6 * y.min() / np.maximum(x.max(axis=0), 1.0))
    if prior is not None:
        start[0] = math.exp(prior[0])
    theta0 = np.log(start)
    sw = np.sqrt(w)

    def residuals(theta: np.ndarray) -> np.ndarray:
        pred = x @ np.exp(theta)
        extra = [PULL * (theta[1:] - theta0[1:])]
        if prior is not None:
            extra.append(np.array([prior[1] * (theta[0] - prior[0])]))
        return np.concatenate([sw * (np.log(pred) - np.log(y)), *extra])

    result = least_squares(residuals, theta0, loss="soft_l1", f_scale=SOFT_L1_SCALE, method="trf")
    return np.exp(result.x)


def _columns(samples: list[Sample]) -> tuple[np.ndarray, list[str]]:
    names = CLASSES[samples[0].kind]
    x = np.array([[s.features.get(f, 0.0) for f in names] for s in samples], dtype=float)
    used = [f for j, f in enumerate(names) if np.any(x[:, j] > 0)]
    return x[:, [names.index(f) for f in used]], used


def family_overhead(groups: list[list[Sample]]) -> float:
    """Log of the overhead shared by a family of classes (per-class rates, one overhead)."""
    blocks, ys, ws = [], [], []
    cols = [_columns(g)[0] for g in groups]
    width = sum(c.shape[1] for c in cols)
    at = 1
    for g, c in zip(groups, cols):
        block = np.zeros((len(g), 1 + width))
        block[:, 0] = 1.0
        block[:, at : at + c.shape[1]] = c
        at += c.shape[1]
        blocks.append(block)
        ys.append([s.exposed for s in g])
        ws.append(_weights(g))
    coef = _solve(blocks, np.concatenate(ys), np.concatenate(ws))
    return math.log(coef[0])


def fit_class(samples: list[Sample], family_log_overhead: float | None = None) -> KernelParams:
    """Fit one class x dtype (see the module docstring)."""
    x, used = _columns(samples)
    y = np.array([s.exposed for s in samples], dtype=float)
    design = np.column_stack([np.ones(len(y)), x])
    prior = None if family_log_overhead is None else (family_log_overhead, PRIOR_WEIGHT)
    coef = _solve([design], y, _weights(samples), prior)
    per = dict.fromkeys(CLASSES[samples[0].kind], 0.0)
    for f, c in zip(used, coef[1:]):
        per[f] = float(c)
    return KernelParams(float(coef[0]), per, len(samples), sorted({s.graph for s in samples}))


def fit(
    samples: Iterable[Sample],
    *,
    name: str,
    device: str,
    peak_macs_per_cycle: dict[str, float],
    source: dict | None = None,
    base: Calibration | None = None,
) -> Calibration:
    """A calibration from samples: every class x dtype with samples fitted, the rest
    completed along the fallbacks (or from `base`)."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(f"{s.kind}.{s.dtype}", []).append(s)
    if not groups:
        raise ValueError("no usable kernel samples in the logs")
    families: dict[tuple[bool, str], list[str]] = {}
    for key, group in groups.items():
        families.setdefault((group[0].kind in COMPUTE, group[0].dtype), []).append(key)
    prior = {fam: family_overhead([groups[k] for k in keys]) for fam, keys in families.items()}
    params = {
        key: fit_class(group, prior[(group[0].kind in COMPUTE, group[0].dtype)])
        for key, group in sorted(groups.items())
    }
    return Calibration(
        name=name,
        device=device,
        peak_macs_per_cycle=dict(peak_macs_per_cycle),
        params=complete(params, base),
        source=dict(source or {}),
    )


def log_ratio(predicted: float, measured: float) -> float:
    """ln(predicted / measured): 0 is exact, +-0.69 is a factor of two."""
    return math.log(max(predicted, 1e-9) / max(measured, 1e-9))
