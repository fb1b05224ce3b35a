"""Load an ONNX graph into executable steps and run it on batches.

Loading does all the checking: every node is validated by its op builder (an
unsupported op or attribute raises UnsupportedOpError naming the model, the
node and the op), nodes are topologically ordered, and nodes whose inputs are
all constant (Constant, DequantizeLinear of weights, shape arithmetic on
initializers) are executed once and become constants. What remains are the
executed nodes, in order, each a kernel over whole batches.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, NamedTuple, overload

import numpy as np
import onnx
from onnx import numpy_helper

from ..ortgraph import has_qdq, ort_optimized
from .accumulation import ACCUMULATION_MODES
from .dtypes import check_array, check_value_type
from .errors import UnsupportedOpError, UnsupportedTypeError
from .kernels import ROUNDING_MODES
from .ops import BuildContext, Kernel, OpSpec, lookup_op, supported_ops
from .qdq import fuse_qdq


class Node(NamedTuple):
    """One executed node. The first three fields are what `first_divergence` needs."""

    name: str
    op_type: str
    outputs: tuple[str, ...]
    inputs: tuple[str, ...]
    domain: str = ""


class TensorInfo(NamedTuple):
    """A graph input: its name, element type (None when the model leaves it open) and shape."""

    name: str
    dtype: np.dtype | None
    shape: tuple[int | str | None, ...]


@dataclass
class _Step:
    node: Node
    kernel: Kernel
    spec: OpSpec | None = None
    context: BuildContext | None = None
    """What built the kernel (kept to rebuild it with a fused activation)."""


class Graph:
    """An ONNX graph compiled to NumPy kernels. Build with `Graph.load`."""

    def __init__(
        self,
        path: Path,
        inputs: tuple[TensorInfo, ...],
        outputs: tuple[str, ...],
        consts: dict[str, np.ndarray],
        steps: list[_Step],
        folded: tuple[Node, ...],
    ) -> None:
        self.path = path
        self.inputs = inputs
        self.outputs = outputs
        self._consts = consts
        self._steps = steps
        self.folded = folded
        """Nodes evaluated once at load time (constant inputs only)."""
        self.fused: tuple[str, ...] = ()
        """Names of QDQ groups run as integer ops (qdq="integer": the emulator's rewrite; "ort": ONNX Runtime's)."""
        self.saturating: tuple[str, ...] = ()
        """Nodes whose int8 sums can saturate in the graph's accumulation (none when it is "exact")."""
        self._fast = _fuse_activations(steps, set(outputs))
        """The steps of a run without intermediates: a node whose output only an activation it can apply
        reads (Conv -> Relu) runs as one step, the activation on each chunk while it is in cache."""
        self._last_use = self._lifetimes(self._fast)

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        source: Path | str | onnx.ModelProto,
        rounding: Mapping[str, str] | None = None,
        qdq: str = "float",
        accumulation: str = "exact",
    ) -> Graph:
        """Parse, order, validate and constant-fold a model: a file, or a ModelProto already in memory
        (messages then name the model by its graph name).

        Types are checked first: a graph input, output or initializer of a type the
        emulator does not run (bfloat16, float8, int4, string, a sequence or an
        optional ...) raises UnsupportedTypeError naming the tensor and the type.

        `rounding` maps node names to a requantization rounding rule for that
        node only ("half_even", the default and ONNX Runtime's; "half_away");
        it exists to inject faults, and naming a node that does not exist or
        does not requantize is an error.

        `qdq` says how DequantizeLinear -> op -> QuantizeLinear groups run:
        "float" as written (the float op in float32), "integer" rewritten into
        integer operators as an accelerator executes them (see `qdq.fuse_qdq`),
        "ort" as ONNX Runtime runs them: the graph its optimizer makes of the
        model (`ortgraph.py`: bias quantization, the QDQ groups it fuses into
        integer kernels, int8 activations turned into uint8 where it does so).
        Graphs without QuantizeLinear/DequantizeLinear nodes (float models) are
        the same either way.

        `accumulation` says how 8-bit products are summed: "exact" (the ONNX
        specification, accelerators, ORT on VNNI/ARM CPUs) or "avx2_int16_pairs"
        (ORT on x86 AVX2 without VNNI; see `accumulation.py`).
        """
        if isinstance(source, onnx.ModelProto):
            model, path = source, Path(f"<{source.graph.name or 'model'}>")
        else:
            path = Path(source)
            model = onnx.load(str(path))
        label = str(path)
        graph = model.graph
        consts = _initializers(graph, label)
        inputs = tuple(
            TensorInfo(v.name, check_value_type(label, v, "graph input"), _shape(v))
            for v in graph.input
            if v.name not in consts
        )
        for v in graph.output:
            check_value_type(label, v, "graph output")
        fused: list[str] = []
        rewritten = False
        if qdq == "integer":
            model, fused = fuse_qdq(model)
            rewritten = bool(fused)
        elif qdq == "ort" and has_qdq(model):
            optimized = ort_optimized(model)
            model, fused, rewritten = optimized.model, list(optimized.integer_nodes), True
        elif qdq not in ("float", "ort"):
            raise ValueError(f"qdq must be 'float', 'integer' or 'ort', got {qdq!r}")
        if rewritten:
            graph = model.graph
            consts = _initializers(graph, label)
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        if accumulation not in ACCUMULATION_MODES:
            raise ValueError(f"accumulation must be one of {ACCUMULATION_MODES}, got {accumulation!r}")
        rounding = dict(rounding or {})
        for node_name, rule in rounding.items():
            if rule not in ROUNDING_MODES:
                raise ValueError(f"rounding for node {node_name!r}: {rule!r} is not one of {ROUNDING_MODES}")

        available = set(consts) | {i.name for i in inputs} | {""}
        ordered = _toposort(list(graph.node), available, label)

        steps: list[_Step] = []
        folded: list[Node] = []
        saturating: list[str] = []
        declared = {spec.name: spec.shape for spec in inputs}
        names = _unique_names(ordered)
        requantizing: set[str] = set()
        for proto, name in zip(ordered, names):
            spec = lookup_op(proto.domain, proto.op_type)
            if spec is None:
                domain = proto.domain or "ai.onnx"
                raise UnsupportedOpError(
                    label,
                    name,
                    proto.op_type,
                    f"op type {proto.op_type} (domain {domain}) is not supported by the tinyaccel emulator "
                    f"({len(supported_ops())} ops are: pytest_tinyaccel.emulator.supported_ops() lists them)",
                )
            if spec.requantizes:
                requantizing.add(name)
            ctx = BuildContext(
                proto,
                name,
                label,
                opset,
                consts,
                rounding.get(name, "half_even"),
                accumulation,
                declared=declared,
            )
            kernel = spec.builder(ctx)
            if ctx.saturating:
                saturating.append(name)
            node = Node(name, proto.op_type, tuple(proto.output), tuple(proto.input), proto.domain)
            if all(i in consts or i == "" for i in proto.input) and name not in rounding:
                values = kernel([consts[i] if i else None for i in proto.input])
                consts.update({o: v for o, v in zip(proto.output, values) if o})
                folded.append(node)
            else:
                steps.append(_Step(node, kernel, spec, ctx))

        for node_name in rounding:
            if node_name not in names:
                raise ValueError(f"rounding: {label} has no node named {node_name!r}")
            if node_name not in requantizing:
                raise ValueError(
                    f"rounding: node {node_name!r} of {label} does not requantize; "
                    f"rounding applies to: "
                    f"{', '.join(n for n in names if n in requantizing) or 'no node of this model'}"
                )
        outputs = tuple(o.name for o in graph.output)
        built = cls(path, inputs, outputs, consts, steps, tuple(folded))
        built.fused = tuple(fused)
        built.saturating = tuple(saturating)
        return built

    # ------------------------------------------------------------------ running

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The executed nodes, in execution order (constant-folded ones excluded)."""
        return tuple(s.node for s in self._steps)

    @overload
    def run(self, feed: Mapping[str, np.ndarray], intermediates: Literal[False] = False) -> dict[str, np.ndarray]: ...

    @overload
    def run(
        self, feed: Mapping[str, np.ndarray], intermediates: Literal[True]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]: ...

    def run(
        self, feed: Mapping[str, np.ndarray], intermediates: bool = False
    ) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Run a batch. Returns the graph outputs by name, and with `intermediates`
        also every executed node's outputs (in execution order) for layer-by-layer
        comparison; tensors no longer needed are freed as the run goes otherwise."""
        env: dict[str, np.ndarray] = dict(self._consts)
        for spec in self.inputs:
            if spec.name not in feed:
                raise ValueError(f"{self.path}: missing input '{spec.name}' ({spec.dtype}, shape {list(spec.shape)})")
            value = np.asarray(feed[spec.name])
            if spec.dtype is not None and value.dtype != spec.dtype:
                raise TypeError(f"{self.path}: input '{spec.name}' must be {spec.dtype}, got {value.dtype}")
            env[spec.name] = value
        seen: dict[str, np.ndarray] = {}
        keep = set(self.outputs)
        for index, step in enumerate(self._steps if intermediates else self._fast):
            args = [env[i] if i else None for i in step.node.inputs]
            values = step.kernel(args)
            for name, value in zip(step.node.outputs, values):
                if name:
                    env[name] = value
                    if intermediates:
                        seen[name] = value
            if not intermediates:
                for name in self._last_use.get(index, ()):
                    if name not in keep:
                        env.pop(name, None)
        # Kernels may hand back strided views (channels-last memory); outputs are made C-contiguous
        # (np.asarray, not np.ascontiguousarray, which would turn a 0-d output into shape (1,)).
        outputs = {name: np.asarray(env[name], order="C") for name in self.outputs}
        return (outputs, seen) if intermediates else outputs

    def _lifetimes(self, steps: list[_Step]) -> dict[int, list[str]]:
        """Index in `steps` after which each runtime tensor is dead."""
        last: dict[str, int] = {}
        for index, step in enumerate(steps):
            for name in step.node.inputs:
                if name and name not in self._consts:
                    last[name] = index
        by_step: dict[int, list[str]] = {}
        for name, index in last.items():
            by_step.setdefault(index, []).append(name)
        return by_step

    def __repr__(self) -> str:
        return f"Graph({self.path.name}: {len(self._steps)} nodes, {len(self.folded)} folded)"


def _fuse_activations(steps: list[_Step], outputs: set[str]) -> list[_Step]:
    """`steps` with each producer -> activation pair its producer can fuse (`OpSpec.fuses`) made one step.

    A pair fuses when the activation (default domain) is the only reader of the
    producer's only output, which is not a graph output; the fused step takes the
    producer's place (the activation reads nothing else, so nothing in between
    needs its result) and writes the activation's output.
    """
    readers: dict[str, list[int]] = {}
    for index, step in enumerate(steps):
        for name in step.node.inputs:
            if name:
                readers.setdefault(name, []).append(index)
    fast: list[_Step] = []
    absorbed: set[int] = set()
    for step in steps:
        if id(step) in absorbed:
            continue
        spec, ctx, outs = step.spec, step.context, step.node.outputs
        single = len(outs) == 1 and outs[0] not in outputs and len(readers.get(outs[0], ())) == 1
        follower = steps[readers[outs[0]][0]] if single else None
        if (
            follower is None
            or spec is None
            or ctx is None
            or follower.node.domain not in ("", "ai.onnx")
            or follower.node.op_type not in spec.fuses
            or follower.node.inputs != (outs[0],)
        ):
            fast.append(step)
            continue
        kernel = spec.builder(replace(ctx, activation=follower.node.op_type))
        fast.append(_Step(step.node._replace(outputs=follower.node.outputs), kernel))
        absorbed.add(id(follower))
    return fast


def _initializers(graph: onnx.GraphProto, label: str) -> dict[str, np.ndarray]:
    """The graph's initializers as arrays; an unsupported element type is refused by name."""
    if len(graph.sparse_initializer):
        name = graph.sparse_initializer[0].values.name
        raise UnsupportedTypeError(
            label, name, "initializer", "is a sparse tensor; the tinyaccel emulator runs dense ones"
        )
    consts: dict[str, np.ndarray] = {}
    for tensor in graph.initializer:
        value = numpy_helper.to_array(tensor)
        check_array(label, tensor.name, "initializer", value)
        consts[tensor.name] = value
    return consts


def _shape(value: onnx.ValueInfoProto) -> tuple[int | str | None, ...]:
    dims = value.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)


def _unique_names(nodes: list[onnx.NodeProto]) -> list[str]:
    """Node names, made non-empty and unique (so a layer can always be named)."""
    names: list[str] = []
    used: set[str] = set()
    for proto in nodes:
        base = proto.name or f"{proto.op_type}:{proto.output[0] if proto.output else ''}"
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}#{k}"
        used.add(name)
        names.append(name)
    return names


def _toposort(nodes: list[onnx.NodeProto], available: set[str], label: str) -> list[onnx.NodeProto]:
    """Kahn's algorithm, keeping the file order among ready nodes."""
    producers = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    waiting = [{producers[i] for i in n.input if i and i not in available and i in producers} for n in nodes]
    for n in nodes:
        for i in n.input:
            if i and i not in available and i not in producers:
                raise ValueError(
                    f"{label}: node '{n.name}' ({n.op_type}) reads '{i}', which no node, input or initializer provides"
                )
    consumers: dict[int, list[int]] = {}
    for j, deps in enumerate(waiting):
        for d in deps:
            consumers.setdefault(d, []).append(j)
    ready = [j for j, deps in enumerate(waiting) if not deps]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        j = heapq.heappop(ready)
        order.append(j)
        for c in consumers.get(j, ()):
            waiting[c].discard(j)
            if not waiting[c]:
                heapq.heappush(ready, c)
    if len(order) != len(nodes):
        stuck = [nodes[j].name or nodes[j].op_type for j in range(len(nodes)) if j not in set(order)]
        raise ValueError(f"{label}: the graph has a cycle through {', '.join(stuck[:5])}")
    return [nodes[j] for j in order]
