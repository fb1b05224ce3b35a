"""Per-layer cycles from ZigZag (zigzag-dse 3.9.1), cached on disk.

`run_zigzag(model, hardware, dtype, cache_dir)` costs every Conv/Gemm/MatMul
layer of a float ONNX model on one of the hardware descriptions shipped in
`hardware/` and returns a `ZigZagResult` whose `layers` are keyed by ONNX node
name. The precision comes from the hardware file's `tinyaccel.precision_bits`
(int8: 8-bit weights/activations, 32-bit partial sums; fp32: 32 bits
throughout), set as ZigZag's per-node `weight_size/act_size/output_size`
attributes on an in-memory copy of the model.

The ZigZag pipeline is built here, stage by stage, so that nothing is written
to disk (ZigZag's high-level API dumps results under `outputs/`):

    parse workload (ZigZag's ONNX parser, mapping given in memory)
    -> parse accelerator (ZigZag's validator + factory, data given in memory)
    -> WorkloadStage (layers already costed are looked up) -> MinimalLatencyStage
    -> SpatialMappingGeneratorStage -> MinimalLatencyStage
    -> TemporalMappingGeneratorStage (LOMA, lpf limit 3, stopped after
       `LOMA_PATIENCE` orderings without a lower latency) -> cost model

The two parser stages and the cost-model stage are thin subclasses of ZigZag's
own (in-memory inputs; the cost model receives the hardware file's
`cycles_per_op`, ZigZag's own knob for operations that take more than one
cycle, used for the AIE-ML's emulated fp32). Per layer, `cycles` is ZigZag's
`latency_total2` (compute incl. memory stalls + initial on-loading + final
off-loading + systolic drain), `ideal_cycles` its `ideal_cycle` (MACs at full
array use).

Results are cached as JSON in `cache_dir` under a key made of the model's
sha256, the hardware file's sha256, the ZigZag version, the dtype and this
module's schema version; writes are atomic (temp file + os.replace), so
concurrent workers (pytest-xdist) at worst compute the same result twice.
Below that, each layer is cached on its own (`_LayerStore`) under what its
cost depends on (`layer_signature`; not its name or neighbours): identical
layers, in one model or across models, are costed once per process and once
per `cache_dir`.

Search: LOMA tries every ordering of a layer's temporal loops (its lpf limit
cannot go below the number of loops: 720 orderings for a 3x3 convolution),
yet on these arrays the latency takes two or three values and the first
orderings reach the minimum. `LOMA_PATIENCE` ends the search after 64
orderings in a row without a lower latency (65 instead of 720 evaluations for
a 3x3 convolution): every layer of the bundled models and the MLPerf Tiny
references (int8, fp32) keeps the exhaustive search's cycles (the last
improvement came at ordering 32; docs/benchmarks.md).

ZigZag is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import onnx

from ..cache import atomic_write_text, content_key
from . import layergraph
from .hardware import Hardware, load_hardware
from .zigzag_workload import zigzag_model

ZIGZAG_VERSION = "3.9.1"
INSTALL_HINT = "pip install 'pytest-tinyaccel[zigzag]'"
SCHEMA = 2
"""Bump when the cached JSON's meaning changes (2: recurrent and 1-D layers costed)."""

LOMA_LPF_LIMIT = 3
NB_SPATIAL_MAPPINGS = 1
LOMA_PATIENCE = 64
"""Stop a layer's temporal-mapping search after this many orderings in a row without a lower latency."""


def zigzag_unavailable() -> str | None:
    """None if ZigZag can be used here, else why not (with the install command).

    Cheap: looks the packages up without importing ZigZag (which pulls sympy,
    pandas, matplotlib: about 2 s).
    """
    return _zigzag_unavailable()


@lru_cache(maxsize=1)
def _zigzag_unavailable() -> str | None:
    if importlib.util.find_spec("zigzag") is None:
        return f"ZigZag (zigzag-dse) is not installed: {INSTALL_HINT}"
    if importlib.util.find_spec("six") is None:
        return f"ZigZag needs the undeclared dependency 'six', which is missing: {INSTALL_HINT}"
    try:
        version = metadata.version("zigzag-dse")
    except metadata.PackageNotFoundError:
        return f"a 'zigzag' module is importable but zigzag-dse is not installed: {INSTALL_HINT}"
    if version != ZIGZAG_VERSION:
        return f"zigzag-dse {version} is installed; the cost model is written for {ZIGZAG_VERSION}: {INSTALL_HINT}"
    return None


class ZigZagUnavailable(RuntimeError):
    """ZigZag cannot be imported; the message has the install command."""


@dataclass
class LayerCost:
    """ZigZag's result for one layer."""

    name: str
    op: str
    cycles: float
    ideal_cycles: float
    macs: int
    spatial_utilization: float
    spatial_mapping: str = ""
    temporal_mapping: str = ""


@dataclass
class ZigZagResult:
    """Per-layer costs of one (model, hardware, dtype), keyed by ONNX node name."""

    layers: dict[str, LayerCost]
    key: dict[str, Any]
    elapsed_s: float
    """Wall time of the ZigZag run that produced the result (cold)."""
    cached: bool = False
    """True when this call was served from the on-disk cache."""
    lookup_s: float = 0.0
    """Wall time of this call (the cache lookup when cached)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_cycles(self) -> float:
        return float(sum(layer.cycles for layer in self.layers.values()))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "key": self.key,
            "elapsed_s": self.elapsed_s,
            "layers": [asdict(layer) for layer in self.layers.values()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ZigZagResult:
        layers = {d["name"]: LayerCost(**d) for d in data["layers"]}
        return cls(layers=layers, key=data["key"], elapsed_s=float(data["elapsed_s"]))


def cache_key(model_sha256: str, hardware: Hardware, dtype: str) -> dict[str, Any]:
    return {"model_sha256": model_sha256, "hardware": hardware.name, "dtype": dtype, **_settings(hardware)}


def _settings(hardware: Hardware) -> dict[str, Any]:
    """What, besides the layers, a cached result depends on: the hardware file, ZigZag, the search settings."""
    return {
        "hardware_sha256": hardware.sha256,
        "zigzag_version": ZIGZAG_VERSION,
        "schema": SCHEMA,
        "loma_lpf_limit": LOMA_LPF_LIMIT,
        "nb_mappings_generated": NB_SPATIAL_MAPPINGS,
        "loma_patience": LOMA_PATIENCE,
    }


def _cache_file(cache_dir: Path, key: dict[str, Any]) -> Path:
    return cache_dir / f"zigzag-{content_key(key)[:32]}.json"


class _LayerStore:
    """Per-layer results: this process's memory, then `cache_dir/zigzag-layers/` (one atomic JSON file each).

    Keyed by `layer_signature` plus the hardware file, the ZigZag version and
    the search settings, so a layer costed for one model serves every model
    that has it.
    """

    _memory: dict[str, dict[str, Any]] = {}

    def __init__(self, hw: Hardware, cache_dir: Path | None) -> None:
        self.base = _settings(hw)
        self.folder = None if cache_dir is None else cache_dir / "zigzag-layers"

    def key(self, layer: Any) -> str:
        return content_key({**self.base, "layer": layer_signature(layer)})

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self._memory or self.folder is None:
            return self._memory.get(key)
        try:
            cost = json.loads((self.folder / f"{key[:32]}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # absent or unreadable: cost it again
        if not isinstance(cost, dict) or cost.get("key") != key:
            return None
        self._memory[key] = cost
        return cost

    def put(self, key: str, cost: dict[str, Any]) -> None:
        self._memory[key] = {**cost, "key": key}
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.folder / f"{key[:32]}.json", json.dumps(self._memory[key], sort_keys=True))


def layer_signature(layer: Any) -> dict[str, Any]:
    """What ZigZag's cost of a layer (a ZigZag LayerNode) depends on, in a canonical form: its type,
    equation, loop sizes, precision, stride/dilation relations, padding, constant operands and mapping;
    not its name, id or neighbours. Sets are sorted (their order varies between processes)."""

    def canonical(value: Any) -> Any:
        value = getattr(value, "data", value)
        if isinstance(value, dict):
            return sorted([str(k), canonical(v)] for k, v in value.items())
        if isinstance(value, (set, frozenset)):
            return sorted(str(v) for v in value)
        if isinstance(value, (list, tuple)):
            return [canonical(v) for v in value]
        return value if isinstance(value, (int, float, bool)) else str(value)

    names = "type equation layer_dim_sizes operand_precision dimension_relations padding constant_operands"
    names += " pr_layer_dim_sizes spatial_mapping spatial_mapping_hint memory_operand_links temporal_ordering"
    return {name: canonical(getattr(layer, name)) for name in names.split()}


def run_zigzag(
    model: str | Path | bytes | onnx.ModelProto,
    hardware: str | Path | Hardware,
    dtype: str,
    cache_dir: str | Path | None = None,
    *,
    prepared: layergraph.LayerGraph | None = None,
    model_sha256: str | None = None,
) -> ZigZagResult:
    """Cost every Conv/Gemm/MatMul layer of `model` on `hardware` with ZigZag.

    `model` is the float ONNX model (path, bytes or ModelProto). `dtype` is part
    of the cache key and must match the hardware file's `tinyaccel.dtype`.
    With `cache_dir`, a result computed before for the same key is returned
    without running (or importing) ZigZag. `prepared`/`model_sha256` let a caller
    that already ran `layergraph.prepare_model` skip doing it again. A layer the cost
    model cannot cost (`layergraph.cost_problem`) is a ValueError naming it.
    """
    t0 = time.perf_counter()
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware)
    if hw.dtype != dtype:
        raise ValueError(f"hardware {hw.name!r} describes dtype {hw.dtype!r}, not {dtype!r}")
    if prepared is None or model_sha256 is None:
        prepared, model_sha256 = layergraph.prepare_model(model)
    layergraph.check_costable(prepared)  # a layer that cannot be costed is named, cached or not
    key = cache_key(model_sha256, hw, dtype)
    path = _cache_file(Path(cache_dir), key) if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("schema") == SCHEMA and data.get("key") == key:
                result = ZigZagResult.from_json(data)
                result.cached = True
                result.lookup_s = time.perf_counter() - t0
                return result
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable or stale: recompute and overwrite
    layers = _evaluate(prepared, hw, _LayerStore(hw, None if cache_dir is None else Path(cache_dir)))
    elapsed = time.perf_counter() - t0
    result = ZigZagResult(layers=layers, key=key, elapsed_s=elapsed, lookup_s=elapsed)
    if path is not None:
        atomic_write_text(path, json.dumps(result.to_json(), indent=1, sort_keys=True))
    return result


def _mapping_data(prepared: layergraph.LayerGraph, hw: Hardware) -> list[dict[str, Any]]:
    """ZigZag mapping entries (by node name for depthwise/grouped convs)."""
    dense = {dim: list(dims) for dim, dims in hw.mapping["dense"].items()}
    depthwise = {dim: list(dims) for dim, dims in hw.mapping["depthwise"].items()}
    links = {"O": "O", "W": "I2", "I": "I1"}
    entries: list[dict[str, Any]] = [{"name": "default", "spatial_mapping_hint": dense, "memory_operand_links": links}]
    for node in prepared.nodes:
        if node.is_depthwise:
            entries.append({"name": node.name, "spatial_mapping_hint": depthwise, "memory_operand_links": links})
    return entries


def _import_zigzag():
    reason = zigzag_unavailable()
    if reason:
        raise ZigZagUnavailable(reason)
    # ZigZag logs every layer/mapping at INFO and warns for each unmapped op type.
    logging.getLogger("zigzag").setLevel(logging.ERROR)
    from zigzag.cost_model.cost_model import CostModelEvaluation
    from zigzag.mapping.temporal_mapping import TemporalMappingType
    from zigzag.parser.accelerator_factory import AcceleratorFactory
    from zigzag.parser.accelerator_validator import AcceleratorValidator
    from zigzag.parser.mapping_validator import MappingValidator
    from zigzag.parser.onnx.onnx_model_parser import ONNXModelParser
    from zigzag.stages.evaluation.cost_model_evaluation import CostModelStage
    from zigzag.stages.main import MainStage
    from zigzag.stages.mapping.spatial_mapping_generation import (
        SpatialMappingGeneratorStage,
    )
    from zigzag.stages.mapping.temporal_mapping_generator_stage import (
        TemporalMappingGeneratorStage,
    )
    from zigzag.stages.parser.accelerator_parser import AcceleratorParserStage
    from zigzag.stages.parser.onnx_model_parser import ONNXModelParserStage
    from zigzag.stages.results.reduce_stages import MinimalLatencyStage
    from zigzag.stages.workload_iterator import WorkloadStage
    from zigzag.workload.layer_node import LayerNode

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
        """LOMA's orderings, in LOMA's order, until `LOMA_PATIENCE` in a row bring no lower latency."""

        def run(self):
            best, since = float("inf"), 0
            for cme, extra in super().run():
                yield cme, extra
                best, since = (cme.latency_total2, 0) if cme.latency_total2 < best else (best, since + 1)
                if since >= LOMA_PATIENCE:
                    return

    return {
        "MainStage": MainStage,
        "stages": [
            InMemoryONNXModelParserStage,
            InMemoryAcceleratorParserStage,
            CachedWorkloadStage,
            MinimalLatencyStage,
            SpatialMappingGeneratorStage,
            MinimalLatencyStage,
            PatientTemporalMappingStage,
            CyclesPerOpCostModelStage,
        ],
        "TemporalMappingType": TemporalMappingType,
    }


def _evaluate(prepared: layergraph.LayerGraph, hw: Hardware, store: _LayerStore) -> dict[str, LayerCost]:
    z = _import_zigzag()
    matrix = [n for n in prepared.nodes if n.is_matrix]
    if not matrix:
        return {}
    model = zigzag_model(prepared, hw.precision_bits)
    costs: dict[str, dict[str, Any]] = {}
    main = z["MainStage"](
        list_of_callables=z["stages"],
        accelerator=hw.zigzag_data,
        workload=model,
        mapping=_mapping_data(prepared, hw),
        layer_costs=costs,
        layer_store=store,
        loma_lpf_limit=LOMA_LPF_LIMIT,
        loma_show_progress_bar=False,
        nb_mappings_generated=NB_SPATIAL_MAPPINGS,
        enable_mix_spatial_mapping_generation=bool(hw.mapping.get("mix_spatial", False)),
        access_same_data_considered_as_no_access=True,
        temporal_mapping_type=z["TemporalMappingType"]("uneven"),
        cycles_per_op=hw.cycles_per_op,
    )
    main.run()
    missing = [n.name for n in matrix if n.name not in costs]
    if missing:
        raise RuntimeError(f"ZigZag returned no cost for layers {missing}")
    fields = ("cycles", "ideal_cycles", "macs", "spatial_utilization", "spatial_mapping", "temporal_mapping")
    # in graph order
    return {n.name: LayerCost(name=n.name, op=n.op, **{f: costs[n.name][f] for f in fields}) for n in matrix}
