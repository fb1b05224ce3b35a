"""The op registry and what every builder shares: one builder per ONNX op, run once per node at load time.

A builder validates the node's attributes and constant inputs (raising
UnsupportedOpError for anything it cannot execute, so a model fails at load
time, not halfway through a run), precomputes what it can (integer weights
minus zero points, requantization scales, lookup tables) and returns a kernel:
a function from the node's runtime input values to its output values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import UnsupportedOpError

Value = np.ndarray
Kernel = Callable[[list[Any]], list[Value]]
"""A compiled node: its input values by position (None for an omitted optional input) -> outputs."""
Builder = Callable[["BuildContext"], Kernel]

_MS = "com.microsoft"
_U8, _I8 = np.dtype(np.uint8), np.dtype(np.int8)
_QTYPES = (_U8, _I8, np.dtype(np.uint16), np.dtype(np.int16))


@dataclass(frozen=True)
class OpSpec:
    builder: Builder
    requantizes: bool
    """True when the op rounds to an integer grid, so a `rounding` override applies."""
    fuses: frozenset[str] = frozenset()
    """Activation op types (default domain) the builder can apply to its output itself (`BuildContext.activation`)."""


REGISTRY: dict[tuple[str, str], OpSpec] = {}


def register(
    *op_types: str, domain: str = "", requantizes: bool = False, fuses: tuple[str, ...] = ()
) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        for op in op_types:
            REGISTRY[(domain, op)] = OpSpec(fn, requantizes, frozenset(fuses))
        return fn

    return deco


def lookup_op(domain: str, op_type: str) -> OpSpec | None:
    return REGISTRY.get(("" if domain in ("", "ai.onnx") else domain, op_type))


def supported_ops() -> list[str]:
    """Sorted op names ('com.microsoft.QGemm' for contrib ops)."""
    return sorted(op if not dom else f"{dom}.{op}" for dom, op in REGISTRY)


def unsupported_ops(model: onnx.ModelProto) -> dict[str, int]:
    """The model's op types the emulator has no kernel for, with their node counts ("ZipMap (ai.onnx.ml)": 1)."""
    found: dict[str, int] = {}
    for node in model.graph.node:
        if lookup_op(node.domain, node.op_type) is None:
            name = f"{node.op_type} ({node.domain})" if node.domain not in ("", "ai.onnx") else node.op_type
            found[name] = found.get(name, 0) + 1
    return found


@dataclass
class BuildContext:
    """What a builder may look at: the node, the constants known so far, the opset."""

    node: onnx.NodeProto
    name: str
    model: str
    opset: int
    consts: Mapping[str, Value]
    rounding: str = "half_even"
    accumulation: str = "exact"
    saturating: bool = False
    """Set by a builder whose int8 sums can saturate in `accumulation` (see accumulation.py): the graph
    lists such nodes, so a golden knows whether its two arithmetics can disagree at all."""
    declared: Mapping[str, tuple[int | str | None, ...]] = field(default_factory=dict)
    """Declared shapes of the graph inputs (static_shape reads them)."""
    activation: str = ""
    """An activation (one of the spec's `fuses`) to apply to the output: the node and the activation that alone
    reads its output, fused by `Graph.load` for runs without intermediates (one pass over the data less)."""

    @property
    def op(self) -> str:
        return self.node.op_type

    def fail(self, problem: str) -> NoReturn:
        raise UnsupportedOpError(self.model, self.name, self.op, problem)

    def attrs(self, **defaults: Any) -> dict[str, Any]:
        """The node's attributes with defaults; any attribute not listed is unsupported."""
        values = dict(defaults)
        for attr in self.node.attribute:
            if attr.name not in defaults:
                self.fail(
                    f"attribute {attr.name}={_show(helper.get_attribute_value(attr))} is not supported by the "
                    f"tinyaccel emulator"
                )
            value = helper.get_attribute_value(attr)
            if isinstance(value, bytes):
                value = value.decode()
            elif isinstance(value, onnx.TensorProto):
                value = numpy_helper.to_array(value)
            elif isinstance(value, list):
                value = [v.decode() if isinstance(v, bytes) else v for v in value]
            values[attr.name] = value
        return values

    def attr_tensor_type(self, name: str) -> int:
        """The ONNX element type of a tensor attribute (Constant's value ...)."""
        return next(a.t.data_type for a in self.node.attribute if a.name == name)

    def unsupported_value(self, attr: str, value: Any, why: str = "") -> NoReturn:
        self.fail(
            f"attribute {attr}={_show(value)} is not supported by the tinyaccel emulator" + (f" ({why})" if why else "")
        )

    def has(self, index: int) -> bool:
        return index < len(self.node.input) and bool(self.node.input[index])

    def const(self, index: int, what: str) -> Value:
        """A constant input (initializer or folded); executing hardware needs these fixed."""
        if not self.has(index):
            self.fail(f"input {index} ({what}) is missing")
        if self.node.input[index] not in self.consts:
            self.fail(
                f"input '{self.node.input[index]}' ({what}) must be a constant (an initializer, or computed from "
                f"constants only): the tinyaccel emulator prepares it when the model is loaded, as an accelerator is "
                f"programmed with fixed weights and quantization parameters"
            )
        return self.consts[self.node.input[index]]

    def static_shape(self, index: int) -> tuple[int, ...] | None:
        """The shape of input `index` when it is a constant or a graph input declared with fixed dimensions."""
        name = self.node.input[index] if self.has(index) else ""
        if name in self.consts:
            return tuple(self.consts[name].shape)
        dims = self.declared.get(name)
        if dims is None or not all(isinstance(d, int) for d in dims):
            return None
        return tuple(int(d) for d in dims if d is not None)

    def opt_const(self, index: int, what: str) -> Value | None:
        return self.const(index, what) if self.has(index) else None

    def n_inputs(self, low: int, high: int) -> None:
        n = len(self.node.input)
        if not low <= n <= high:
            self.fail(f"expects {low}..{high} inputs, has {n}")


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, onnx.TensorProto):
        return "<tensor>"
    return str(value)


def _scalar(ctx: BuildContext, value: Value, what: str) -> Value:
    if value.size != 1:
        ctx.fail(f"{what} must be a scalar (per-tensor), got shape {list(value.shape)}")
    return value.reshape(())


def _qdtype(ctx: BuildContext, zp: Value | None, default: np.dtype = _U8) -> np.dtype:
    dtype = zp.dtype if zp is not None else default
    if dtype not in _QTYPES:
        ctx.fail(f"quantized type {dtype} is not supported by the tinyaccel emulator (uint8, int8, uint16, int16)")
    return np.dtype(dtype)


def _f32(value: Value) -> Value:
    return np.asarray(value, dtype=np.float32)
