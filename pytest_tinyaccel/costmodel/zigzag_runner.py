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

import importlib.util
import json
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from types import ModuleType
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
"""Stop a layer's temporal-mapping search after this many orderings in a row without a lower latency
(passed to zigzag_stages' search as `loma_patience`)."""


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


def load_stages() -> ModuleType:
    """The `zigzag_stages` module (importing it imports ZigZag), or ZigZagUnavailable saying why not."""
    reason = zigzag_unavailable()
    if reason:
        raise ZigZagUnavailable(reason)
    import importlib

    return importlib.import_module(".zigzag_stages", __package__)


def _evaluate(prepared: layergraph.LayerGraph, hw: Hardware, store: _LayerStore) -> dict[str, LayerCost]:
    z = load_stages()
    matrix = [n for n in prepared.nodes if n.is_matrix]
    if not matrix:
        return {}
    model = zigzag_model(prepared, hw.precision_bits)
    costs: dict[str, dict[str, Any]] = {}
    main = z.MainStage(
        list_of_callables=z.STAGES,
        accelerator=hw.zigzag_data,
        workload=model,
        mapping=_mapping_data(prepared, hw),
        layer_costs=costs,
        layer_store=store,
        loma_lpf_limit=LOMA_LPF_LIMIT,
        loma_patience=LOMA_PATIENCE,
        loma_show_progress_bar=False,
        nb_mappings_generated=NB_SPATIAL_MAPPINGS,
        enable_mix_spatial_mapping_generation=bool(hw.mapping.get("mix_spatial", False)),
        access_same_data_considered_as_no_access=True,
        temporal_mapping_type=z.TemporalMappingType("uneven"),
        cycles_per_op=hw.cycles_per_op,
    )
    main.run()
    missing = [n.name for n in matrix if n.name not in costs]
    if missing:
        raise RuntimeError(f"ZigZag returned no cost for layers {missing}")
    fields = ("cycles", "ideal_cycles", "macs", "spatial_utilization", "spatial_mapping", "temporal_mapping")
    # in graph order
    return {n.name: LayerCost(name=n.name, op=n.op, **{f: costs[n.name][f] for f in fields}) for n in matrix}
