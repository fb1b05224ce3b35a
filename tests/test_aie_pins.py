"""The AIE model's per-kernel cycles, pinned (tests/data/aie_pins.csv, written by
tests/tools/aie_pins.py): every kernel of the shared aiesimulator logs beside its measured
exposed cycles, and every kernel the model maps the MLPerf Tiny reference models to. A model
change that moves any of them (say, a data-movement kernel charged nothing) fails here, naming
the kernels, so it is a visible change a reviewer sees in the pins' diff, never a silent one.

The comparison is exact (tolerance 0, cycles to a thousandth): the predictions are plain
float64 arithmetic on constants fitted by a deterministic least-squares solve, and they came
out identical under OpenBLAS's SSE3, AVX and AVX-512 kernels."""

from __future__ import annotations

import csv
import io

import pytest
from tools import aie_pins

needs_shared = pytest.mark.skipif(
    not aie_pins.LOGS.is_file() or not aie_pins.MLPERF.is_dir(), reason="../shared logs/models not present"
)
UPDATE = "if the change is deliberate, review it and write the pins again: python tests/tools/aie_pins.py"


def keyed(text: str) -> dict[tuple[str, str, str], dict[str, str]]:
    return {(r["kind"], r["source"], r["index"]): r for r in csv.DictReader(io.StringIO(text))}


@needs_shared
def test_every_kernel_prediction_equals_its_pin():
    pinned = keyed(aie_pins.PINS.read_text(encoding="utf-8"))
    now = keyed(aie_pins.render(aie_pins.rows()))
    assert now.keys() == pinned.keys(), f"kernels added or removed: {sorted(now.keys() ^ pinned.keys())[:10]}; {UPDATE}"
    moved = [
        f"{k[1]} #{k[2] or '-'} {now[k]['kernel']}: {field} {pinned[k][field]} -> {now[k][field]}"
        for k in pinned
        for field in ("kernel", "measured", "predicted", "start", "own")
        if now[k][field] != pinned[k][field]
    ]
    assert not moved, f"{len(moved)} pinned AIE figure(s) moved:\n" + "\n".join(moved[:40]) + f"\n{UPDATE}"


def test_the_pins_cover_every_logged_kernel_and_every_mapped_model():
    rows = list(csv.DictReader(io.StringIO(aie_pins.PINS.read_text(encoding="utf-8"))))
    logged = [r for r in rows if r["kind"] == "log" and r["index"]]
    assert len(logged) == 370  # every kernel of onnx2versal_vck190_kernels.csv
    assert {r["source"] for r in rows if r["kind"] == "mapped"} == set(aie_pins.MODELS)
    kinds = {r["kernel"].split(":")[0] for r in rows if r["kind"] == "mapped" and r["index"]}
    assert {"pad", "split", "concat", "transpose"} <= kinds  # the data-movement kernels are pinned too
    assert all(float(r["predicted"]) > 0 for r in rows if r["kind"] == "mapped" and r["kernel"].startswith("pad"))
