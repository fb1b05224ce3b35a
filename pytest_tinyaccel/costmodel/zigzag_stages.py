"""ZigZag's pipeline stages as `zigzag_runner` assembles them (zigzag-dse 3.9.1).

Importing this module imports ZigZag (about 2 s: sympy, pandas, matplotlib), so only
`zigzag_runner.load_stages` imports it, when a layer must be costed. The two parser stages
and the cost-model stage are thin subclasses of ZigZag's own (inputs given in memory; the
cost model receives the hardware file's `cycles_per_op`); `CachedWorkloadStage` looks each
layer up in the runner's per-layer store first; `PatientTemporalMappingStage` ends LOMA's
search after `zigzag_runner.LOMA_PATIENCE` orderings without a lower latency.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import onnx
from zigzag.cost_model.cost_model import CostModelEvaluation
from zigzag.mapping.temporal_mapping import TemporalMappingType
from zigzag.parser.accelerator_factory import AcceleratorFactory
from zigzag.parser.accelerator_validator import AcceleratorValidator
from zigzag.parser.mapping_validator import MappingValidator
from zigzag.parser.onnx.onnx_model_parser import ONNXModelParser
from zigzag.stages.evaluation.cost_model_evaluation import CostModelStage
from zigzag.stages.main import MainStage
from zigzag.stages.mapping.spatial_mapping_generation import SpatialMappingGeneratorStage
from zigzag.stages.mapping.temporal_mapping_generator_stage import TemporalMappingGeneratorStage
from zigzag.stages.parser.accelerator_parser import AcceleratorParserStage
from zigzag.stages.parser.onnx_model_parser import ONNXModelParserStage
from zigzag.stages.results.reduce_stages import MinimalLatencyStage
from zigzag.stages.workload_iterator import WorkloadStage
from zigzag.workload.layer_node import LayerNode

# ZigZag logs every layer/mapping at INFO and warns for each unmapped op type.
logging.getLogger("zigzag").setLevel(logging.ERROR)


class InMemoryONNXParser(ONNXModelParser):
    """ZigZag's ONNX parser with the mapping given as data instead of a yaml path."""

    def __init__(self, onnx_model: onnx.ModelProto, mapping_data: list[dict[str, Any]]):
        self.onnx_model = onnx_model
        self.workload = None
        self.mapping_yaml_path = "<memory>.yaml"
        validator = MappingValidator(mapping_data)
        self.mapping_data = validator.normalized_data
        if not validator.validate():
            raise ValueError(f"invalid ZigZag mapping: {mapping_data!r}")

    def run(self):
        return self.parse_workload_from_onnx_model_and_mapping()


class InMemoryONNXModelParserStage(ONNXModelParserStage):
    def __init__(self, list_of_callables, *, workload, mapping, **kwargs):
        super(ONNXModelParserStage, self).__init__(list_of_callables, **kwargs)
        self.onnx_model_parser = InMemoryONNXParser(workload, mapping)


class InMemoryAcceleratorParserStage(AcceleratorParserStage):
    def __init__(self, list_of_callables, *, accelerator, **kwargs):
        super(AcceleratorParserStage, self).__init__(list_of_callables, **kwargs)
        self.accelerator_data = accelerator

    def run(self):
        validator = AcceleratorValidator(copy.deepcopy(self.accelerator_data))
        data = validator.normalized_data
        if not validator.validate():
            raise ValueError(f"invalid ZigZag accelerator: {validator.validator.errors}")
        accelerator = AcceleratorFactory(data).create()
        sub_stage = self.list_of_callables[0](self.list_of_callables[1:], accelerator=accelerator, **self.kwargs)
        yield from sub_stage.run()


class TolerantCostModelEvaluation(CostModelEvaluation):
    """ZigZag's cost model with one safety check relaxed.

    When spreading the loading of data over compute cycles, ZigZag 3.9.1
    reduces each transfer towards a minimum that it computes from memory
    level 1 whatever level the port belongs to; for a port above level 1
    that minimum can exceed the transfer itself and an assertion fires.
    Here such a transfer is simply not reduced (the greedy reduction is
    otherwise the same: largest first, never below its minimum).
    """

    @staticmethod
    def reduce_ordered(c_list, m_list, s):
        remaining = [float(c) for c in c_list]
        reductions = [0.0] * len(remaining)
        budget = float(s)
        if budget <= 0:
            return remaining, reductions
        for i in sorted(range(len(remaining)), key=lambda j: remaining[j], reverse=True):
            if budget <= 0:
                break
            step = min(max(0.0, remaining[i] - m_list[i]), budget)
            remaining[i] -= step
            reductions[i] += step
            budget -= step
        return remaining, reductions


class CyclesPerOpCostModelStage(CostModelStage):
    def __init__(self, list_of_callables, *, cycles_per_op: float = 1.0, **kwargs):
        super().__init__(list_of_callables, **kwargs)
        self.cycles_per_op = float(cycles_per_op)

    def run(self):
        cme = TolerantCostModelEvaluation(
            accelerator=self.accelerator,
            layer=self.layer,
            spatial_mapping=self.spatial_mapping,
            spatial_mapping_int=self.spatial_mapping_int,
            temporal_mapping=self.temporal_mapping,
            access_same_data_considered_as_no_access=self.access_same_data_considered_as_no_access,
            cycles_per_op=self.cycles_per_op,
        )
        yield cme, None


class CachedWorkloadStage(WorkloadStage):
    """ZigZag's layer loop, storing each layer's best result in `layer_costs` (by layer name) instead of
    yielding it; a layer `layer_store` already holds is not costed again."""

    def __init__(self, list_of_callables, *, layer_costs, layer_store, **kwargs):
        super().__init__(list_of_callables, **kwargs)
        self.layer_costs, self.layer_store = layer_costs, layer_store

    def run(self):
        for layer in self.workload.topological_sort():
            if not isinstance(layer, LayerNode):  # ZigZag's dummy nodes
                continue
            key = self.layer_store.key(layer)
            cost = self.layer_store.get(key)
            if cost is None:
                kwargs = {**self.kwargs, "layer": layer, "accelerator": self.accelerator}
                best, _others = next(iter(self.list_of_callables[0](self.list_of_callables[1:], **kwargs).run()))
                cost = {
                    "cycles": float(best.latency_total2),
                    "ideal_cycles": float(best.ideal_cycle),
                    "macs": int(best.layer.total_mac_count),
                    "spatial_utilization": float(best.mac_spatial_utilization),
                    "spatial_mapping": str(best.layer.spatial_mapping),
                    "temporal_mapping": str(best.temporal_mapping),
                }
                self.layer_store.put(key, cost)
            self.layer_costs[layer.name] = cost
        yield from ()


class PatientTemporalMappingStage(TemporalMappingGeneratorStage):
    """LOMA's orderings, in LOMA's order, until `loma_patience` (an argument of the pipeline) in a row bring
    no lower latency."""

    def run(self):
        patience = self.kwargs["loma_patience"]
        best, since = float("inf"), 0
        for cme, extra in super().run():
            yield cme, extra
            best, since = (cme.latency_total2, 0) if cme.latency_total2 < best else (best, since + 1)
            if since >= patience:
                return


STAGES = [
    InMemoryONNXModelParserStage,
    InMemoryAcceleratorParserStage,
    CachedWorkloadStage,
    MinimalLatencyStage,
    SpatialMappingGeneratorStage,
    MinimalLatencyStage,
    PatientTemporalMappingStage,
    CyclesPerOpCostModelStage,
]
"""The pipeline, outermost first (see zigzag_runner's docstring)."""

__all__ = ["STAGES", "MainStage", "TemporalMappingType"]
