"""Recurrent layers: LSTM, GRU and RNN, every direction, layout, activation and optional input of ONNX.

The input projection X @ W^T of all time steps is one matrix product; the
recurrence then steps through time, one (batch x hidden) product per step and
direction. Batches with a shorter `sequence_lens` stop early: their outputs past
the end are zero and Y_h / Y_c hold their last valid step, as ONNX specifies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .. import kernels as K
from .core import (
    BuildContext,
    Kernel,
    Value,
    register,
)

Activation = Callable[[Value], Value]

# name -> (number of parameters from activation_alpha/activation_beta, function of x and those parameters)
_ACTIVATIONS: dict[str, tuple[int, Callable[..., Value]]] = {
    "Sigmoid": (0, K.sigmoid),
    "Tanh": (0, np.tanh),
    "Relu": (0, lambda x: np.maximum(x, 0)),
    "Softsign": (0, lambda x: x / (1 + np.abs(x))),
    "Softplus": (0, lambda x: np.logaddexp(0, x)),
    "Affine": (2, lambda x, a, b: a * x + b),
    "LeakyRelu": (1, lambda x, a: np.where(x >= 0, x, a * x)),
    "ThresholdedRelu": (1, lambda x, a: np.where(x > a, x, 0)),
    "ScaledTanh": (2, lambda x, a, b: a * np.tanh(b * x)),
    "HardSigmoid": (2, lambda x, a, b: np.clip(a * x + b, 0, 1)),
    "Elu": (1, lambda x, a: np.where(x >= 0, x, a * np.expm1(x))),
}
_DEFAULTS: dict[str, tuple[float, float]] = {"LeakyRelu": (0.01, 0.0), "HardSigmoid": (0.2, 0.5)}
"""alpha/beta when activation_alpha/beta run out (ONNX's defaults; 1.0 and 0.0 otherwise)."""


@dataclass(frozen=True)
class _Cell:
    """What one recurrent op needs: gate count, activations per direction, clip, options."""

    op: str
    hidden: int
    directions: tuple[bool, ...]  # True: reverse
    activations: tuple[tuple[Activation, ...], ...]
    clip: float | None
    layout: int
    linear_before_reset: bool
    input_forget: bool


def _activations(ctx: BuildContext, names: list[str], alphas: list[float], betas: list[float]) -> list[Activation]:
    out: list[Activation] = []
    a_iter, b_iter = iter(alphas), iter(betas)
    for name in names:
        if name not in _ACTIVATIONS:
            ctx.unsupported_value("activations", names, f"{name} is not a recurrent activation ONNX defines")
        count, fn = _ACTIVATIONS[name]
        da, db = _DEFAULTS.get(name, (1.0, 0.0))
        params = ([next(a_iter, da)] if count >= 1 else []) + ([next(b_iter, db)] if count >= 2 else [])
        out.append(_bind(fn, params))
    return out


def _bind(fn: Callable[..., Value], params: list[float]) -> Activation:
    """The activation with its alpha/beta, cast to the input's type when applied."""
    return lambda x: fn(x, *(x.dtype.type(p) for p in params))


def _cell(ctx: BuildContext, gates: int, default_acts: list[str]) -> _Cell:
    extra = {"linear_before_reset": 0} if ctx.op == "GRU" else {"input_forget": 0} if ctx.op == "LSTM" else {}
    a = ctx.attrs(
        activation_alpha=None,
        activation_beta=None,
        activations=None,
        clip=None,
        direction="forward",
        hidden_size=None,
        layout=0,
        **extra,
    )
    if a["direction"] not in ("forward", "reverse", "bidirectional"):
        ctx.unsupported_value("direction", a["direction"])
    directions = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}[a["direction"]]
    names = a["activations"] or default_acts * len(directions)
    if len(names) != len(default_acts) * len(directions):
        ctx.unsupported_value("activations", names, f"expected {len(default_acts)} per direction")
    acts = _activations(ctx, names, list(a["activation_alpha"] or []), list(a["activation_beta"] or []))
    per = len(default_acts)
    w = ctx.consts.get(ctx.node.input[1])
    hidden = a["hidden_size"] or (w.shape[1] // gates if w is not None else None)
    if hidden is None:
        ctx.fail("attribute hidden_size is needed when W is not a constant")
    return _Cell(
        ctx.op,
        int(hidden),
        directions,
        tuple(tuple(acts[d * per : (d + 1) * per]) for d in range(len(directions))),
        None if a["clip"] is None else float(a["clip"]),
        int(a["layout"]),
        bool(a.get("linear_before_reset", 0)),
        bool(a.get("input_forget", 0)),
    )


def _steps(lengths: Value, seq: int, reverse: bool) -> Iterator[tuple[int, Value]]:
    """(time step, mask of the batches still running) in processing order."""
    for t in range(seq - 1, -1, -1) if reverse else range(seq):
        yield t, t < lengths


def _run_direction(c: _Cell, d: int, x: Value, v: list[Value | None], lengths: Value, reverse: bool) -> tuple:
    """One direction over the whole sequence: Y (seq, batch, hidden), final H and (LSTM) final C."""
    seq, batch, _ = x.shape
    h_size, dtype = c.hidden, x.dtype
    w, r = v[1][d], v[2][d]  # type: ignore[index]
    b = v[3][d] if len(v) > 3 and v[3] is not None else np.zeros(2 * w.shape[0], dtype)
    wb, rb = b[: w.shape[0]], b[w.shape[0] :]
    h = v[5][d] if len(v) > 5 and v[5] is not None else np.zeros((batch, h_size), dtype)
    cell = v[6][d] if len(v) > 6 and v[6] is not None else np.zeros((batch, h_size), dtype)
    peep = v[7][d] if len(v) > 7 and v[7] is not None else np.zeros(3 * h_size, dtype)
    projected = x @ w.T + wb  # every step's input projection at once
    f_act = c.activations[d][0]
    g_act = c.activations[d][1] if c.op != "RNN" else f_act
    h_act = c.activations[d][2] if c.op == "LSTM" else f_act

    def gate(z: Value, act: Activation) -> Value:
        return act(np.clip(z, -c.clip, c.clip) if c.clip is not None else z)

    y = np.zeros((seq, batch, h_size), dtype)
    for t, running in _steps(lengths, seq, reverse):
        keep = running[:, None]
        if c.op == "LSTM":
            z = projected[t] + h @ r.T + rb
            zi, zo, zf, zc = (z[:, k * h_size : (k + 1) * h_size] for k in range(4))
            i = gate(zi + peep[:h_size] * cell, f_act)
            f = 1 - i if c.input_forget else gate(zf + peep[2 * h_size :] * cell, f_act)
            new_c = f * cell + i * gate(zc, g_act)
            o = gate(zo + peep[h_size : 2 * h_size] * new_c, f_act)
            new_h = o * h_act(new_c)
            cell = np.where(keep, new_c, cell)
        elif c.op == "GRU":
            xz, xr, xh = (projected[t][:, k * h_size : (k + 1) * h_size] for k in range(3))
            rz, rr, rh = (r[k * h_size : (k + 1) * h_size] for k in range(3))
            bz, br, bh = (rb[k * h_size : (k + 1) * h_size] for k in range(3))
            zg = gate(xz + h @ rz.T + bz, f_act)
            rg = gate(xr + h @ rr.T + br, f_act)
            recur = rg * (h @ rh.T + bh) if c.linear_before_reset else (rg * h) @ rh.T + bh
            new_h = (1 - zg) * gate(xh + recur, g_act) + zg * h
        else:
            new_h = gate(projected[t] + h @ r.T + rb, f_act)
        h = np.where(keep, new_h, h).astype(dtype, copy=False)
        y[t] = np.where(keep, h, 0)
    return y, h, cell


def _recurrent(ctx: BuildContext, gates: int, default_acts: list[str]) -> Kernel:
    c = _cell(ctx, gates, default_acts)
    ctx.n_inputs(3, 8 if c.op == "LSTM" else 6)

    def run(v: list[Value | None]) -> list[Value]:
        x = v[0]
        assert x is not None
        if c.layout:  # [batch, seq, ...] in, [batch, seq, dirs, ...] out
            x = x.transpose(1, 0, 2)
        v = list(v)
        for k in (5, 6):  # initial_h / initial_c are [batch, dirs, hidden] with layout 1
            if c.layout and len(v) > k and v[k] is not None:
                v[k] = v[k].transpose(1, 0, 2)  # type: ignore[union-attr]
        seq, batch = x.shape[:2]
        lengths = np.asarray(v[4]) if len(v) > 4 and v[4] is not None else np.full(batch, seq)
        results = [_run_direction(c, d, x, v, lengths, rev) for d, rev in enumerate(c.directions)]
        y = np.stack([r[0] for r in results], axis=1)  # (seq, dirs, batch, hidden)
        y_h = np.stack([r[1] for r in results])
        y_c = np.stack([r[2] for r in results])
        if c.layout:
            y, y_h, y_c = y.transpose(2, 0, 1, 3), y_h.transpose(1, 0, 2), y_c.transpose(1, 0, 2)
        return [y, y_h, y_c][: 3 if c.op == "LSTM" else 2]

    return run


@register("LSTM")
def _lstm(ctx: BuildContext) -> Kernel:
    return _recurrent(ctx, 4, ["Sigmoid", "Tanh", "Tanh"])


@register("GRU")
def _gru(ctx: BuildContext) -> Kernel:
    return _recurrent(ctx, 3, ["Sigmoid", "Tanh"])


@register("RNN")
def _rnn(ctx: BuildContext) -> Kernel:
    return _recurrent(ctx, 1, ["Tanh"])
