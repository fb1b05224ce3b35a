"""Cycles of one layer on Gemmini, from the library's tiles (`gemmini_tiling`) and a few
constants fitted on FireSim measurements (`gemmini_fit`).

Per tile (one `LOOP_WS` / `LOOP_CONV_WS` instruction):

* **loads** -- DMA read requests (one per DRAM row of a mvin, at most `dma_maxbytes`) times
  a cost per request: Gemmini keeps `max_in_flight_mem_reqs` reads in flight, so a request
  costs about the memory latency divided by that depth, whatever its size. The latency is
  that of the level holding the layer (inputs + weights + outputs) the first time it is read:
  the SoC's L2 (`l2_kib`), its last-level cache (`llc_kib`), or DRAM. Data a layer reads again
  (an input read once per output-channel tile, a weight once per output tile) costs the
  re-read rate `warm`.
* **execute** -- one cycle per row streamed through the array, plus `per_compute` per compute
  command and `per_weight_block` per preload of new weights; a convolution with a 1x1
  kernel takes `conv1x1_execute` times as long (fitted: FireSim runs those commands at
  well under the rate of the same commands on larger kernels; the RTL reason is not modelled).
* **stores** -- DMA write requests times `store`.

`LoopConv` starts a tile's execute when all of its loads are done and its stores when the
execute is done, so a conv tile costs loads + execute + stores; `LoopMatmul` lets the three
overlap, so a matmul tile costs the largest. Each tile adds `per_tile` (the host's loop and
its RoCC instructions), each layer `per_layer`.

The constants are data (`hardware/gemmini_timing.toml`, written by `python -m
pytest_tinyaccel.costmodel gemmini-fit`), with how they were fitted and their held-out error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .gemmini_config import GemminiConfig, read_toml
from .gemmini_tiling import Layer, LayerWork, TileWork, layer_work

DEFAULT_TIMING = Path(__file__).resolve().parent / "hardware" / "gemmini_timing.toml"
PARAMS: tuple[str, ...] = ("l2", "llc", "dram", "warm", "store", "per_compute", "per_weight_block")
PARAMS += ("conv1x1_execute", "per_tile", "per_layer")
"""The fitted constants (cycles, except conv1x1_execute: a factor)."""
MODEL = "Gemmini library-tiling model"


@dataclass
class Timing:
    """Fitted constants, the memory levels they assume, and how well they predict."""

    params: dict[str, float]
    l2_kib: float = 512.0
    llc_kib: float = 4096.0
    name: str = "gemmini_timing"
    source: dict[str, Any] = field(default_factory=dict)
    """How the constants were made: CSV, its sha256, rows, command."""
    error: dict[str, Any] = field(default_factory=dict)
    """Median/p90 |error| (as factors) in sample and held out, against what."""
    path: str = ""

    def measured_on(self, config: GemminiConfig) -> bool:
        """True when the fit's measurements ran on this array size and element width."""
        dims, widths = self.source.get("array_dims"), self.source.get("input_bytes")
        return bool(dims and widths and config.dim in dims and config.input_bytes in widths)

    def describe_error(self, config: GemminiConfig | None = None) -> str:
        held = self.error.get("held_out", {})
        if config is not None and held and not self.measured_on(config):
            return f"error not measured on a {config.dim}x{config.dim} array of {config.input_bytes}-byte elements"
        if not held:
            return "error not measured"
        against = str(self.error.get("against", "measurements")).split(" ")[0]
        rows = held.get("rows", "?")
        return f"held-out median |error| x{held['median']:.2f}, p90 x{held['p90']:.2f} over {rows} {against} layers"


def load_timing(path: str | Path | None = None) -> Timing:
    """Read a timing file (the shipped one by default); errors name the file and the key."""
    path = Path(path) if path else DEFAULT_TIMING
    data, label = read_toml(path, "Gemmini timing file")
    params = data.get("params")
    if not isinstance(params, dict):
        raise ValueError(f"{path}: missing the [params] table")
    missing = [p for p in PARAMS if p not in params]
    if missing:
        raise ValueError(f"{path}: [params] lacks {', '.join(missing)}")
    bad = [p for p in PARAMS if isinstance(params[p], bool) or not isinstance(params[p], int | float) or params[p] < 0]
    if bad:
        raise ValueError(f"{path}: [params] {', '.join(bad)} must be non-negative numbers")
    memory = data.get("memory", {})
    return Timing(
        params={p: float(params[p]) for p in PARAMS},
        l2_kib=float(memory.get("l2_kib", 512)),
        llc_kib=float(memory.get("llc_kib", 4096)),
        name=str(data.get("name", path.stem)),
        source=dict(data.get("source", {})),
        error=dict(data.get("error", {})),
        path=label,
    )


@dataclass
class LayerCycles:
    """A layer's predicted cycles and where they go."""

    cycles: float
    loads: float
    execute: float
    stores: float
    tiles: int
    tile: dict[str, int]
    kind: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "cycles": self.cycles,
            "loads": self.loads,
            "execute": self.execute,
            "stores": self.stores,
            "tiles": self.tiles,
            "tile_shape": self.tile,  # ("tile" in a layer's extra is an AIE tile index: traces, charts)
            "library_call": "tiled_matmul_auto" if self.kind == "matmul" else "tiled_conv_auto",
        }


def _read_cost(work: LayerWork, timing: Timing) -> float:
    """Cycles per DMA read request: first reads at the level holding the layer, re-reads at `warm`."""
    p = timing.params
    held = work.footprint_bytes
    first = p["l2"] if held <= timing.l2_kib * 1024 else p["llc"] if held <= timing.llc_kib * 1024 else p["dram"]
    total = sum(t.ld_bytes * t.count for t in work.tiles)
    cold = min(1.0, work.unique_read_bytes / total) if total else 1.0
    return cold * first + (1 - cold) * min(first, p["warm"])


def _tile_parts(t: TileWork, read: float, conv1x1: bool, p: dict[str, float]) -> tuple[float, float, float]:
    loads = t.ld_requests * read
    execute = t.compute_rows + p["per_compute"] * t.compute_cmds + p["per_weight_block"] * t.weight_blocks
    if conv1x1:
        execute *= p["conv1x1_execute"]
    return loads, execute, p["store"] * t.st_requests


def work_cycles(work: LayerWork, timing: Timing) -> LayerCycles:
    """Cycles of the library's tiles of one layer (see the module docstring)."""
    p = timing.params
    layer = work.layer
    read = _read_cost(work, timing)
    conv1x1 = layer.kind == "conv" and layer.kernel_rows * layer.kernel_cols == 1
    total = loads = execute = stores = 0.0
    for t in work.tiles:
        ld, ex, st = _tile_parts(t, read, conv1x1, p)
        body = max(ld, ex, st) if layer.kind == "matmul" else ld + ex + st
        total += (body + p["per_tile"]) * t.count
        loads, execute, stores = loads + ld * t.count, execute + ex * t.count, stores + st * t.count
    return LayerCycles(
        cycles=total + p["per_layer"],
        loads=loads,
        execute=execute,
        stores=stores,
        tiles=work.n_tiles,
        tile=work.tile,
        kind=layer.kind,
    )


def layer_cycles(layer: Layer, config: GemminiConfig, timing: Timing) -> LayerCycles:
    """Predicted cycles of `layer` run by Gemmini's library on `config`."""
    return work_cycles(layer_work(layer, config), timing)
