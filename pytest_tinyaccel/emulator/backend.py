"""The emulator as an ONNX backend (`onnx.backend.base.Backend`), so that the ONNX project's own
backend tests (and any tool written against that interface) run it.

    rep = EmulatorBackend.prepare(model)            # Graph.load: every node and type checked here
    outputs = rep.run([x])                          # a tuple, in the graph's output order

`prepare` raises UnsupportedOpError (or UnsupportedTypeError) for anything the
emulator does not run; keyword arguments go to `Graph.load` (`qdq`,
`accumulation`, `rounding`). Only the CPU device exists: the emulator is NumPy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from .dtypes import ONNX_TO_NUMPY
from .graph import Graph


class EmulatorRep(BackendRep):
    """A loaded graph: `run` takes the inputs in graph order (or by name) and returns the outputs in order."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if kwargs:
            raise TypeError(f"EmulatorRep.run takes no options, got {sorted(kwargs)}")
        if isinstance(inputs, Mapping):
            feed = dict(inputs)
        else:
            values = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            names = [spec.name for spec in self.graph.inputs]
            if len(values) != len(names):
                raise ValueError(f"the graph takes {len(names)} inputs ({', '.join(names)}), got {len(values)}")
            feed = dict(zip(names, values))
        outputs = self.graph.run(feed)
        return tuple(outputs[name] for name in self.graph.outputs)


class EmulatorBackend(Backend):
    """The tinyaccel NumPy emulator behind ONNX's backend interface (CPU only)."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> EmulatorRep:
        cls._check_device(device)
        return EmulatorRep(Graph.load(model, **kwargs))

    @classmethod
    def run_node(
        cls,
        node: onnx.NodeProto,
        inputs: Any,
        device: str = "CPU",
        outputs_info: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None,
        **kwargs: Any,
    ) -> tuple[np.ndarray, ...]:
        """Run one node on `inputs` (arrays in the node's input order): it is wrapped in a one-node graph."""
        cls._check_device(device)
        arrays = [np.asarray(x) for x in inputs]
        by_dtype = {dtype: elem for elem, dtype in ONNX_TO_NUMPY.items()}
        graph_inputs = [
            helper.make_tensor_value_info(name, by_dtype.get(x.dtype, onnx.TensorProto.UNDEFINED), x.shape)
            for name, x in zip(node.input, arrays)
            if name
        ]
        graph_outputs = [helper.make_empty_tensor_value_info(name) for name in node.output if name]
        opset = int(kwargs.pop("opset_version", onnx.defs.onnx_opset_version()))
        graph = helper.make_graph([node], f"run_node_{node.op_type}", graph_inputs, graph_outputs)
        opsets = [helper.make_opsetid("", opset)]
        if node.domain not in ("", "ai.onnx"):
            opsets.append(helper.make_opsetid(node.domain, 1))
        model = helper.make_model(graph, opset_imports=opsets)
        feed = {name: x for name, x in zip(node.input, arrays) if name}
        return EmulatorRep(Graph.load(model, **kwargs)).run(feed)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        try:
            return Device(device).type == DeviceType.CPU
        except AttributeError:
            return False

    @classmethod
    def _check_device(cls, device: str) -> None:
        if not cls.supports_device(device):
            raise ValueError(f"the tinyaccel emulator runs on the CPU only (NumPy), not on {device!r}")
