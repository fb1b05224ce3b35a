"""ONNX Runtime's int8 outputs in each arithmetic its CPU kernels can take, so a golden travels between CPUs.

On x86 CPUs without VNNI, ONNX Runtime adds pairs of uint8 x int8 products in
saturating int16 (emulator/accumulation.py); elsewhere it sums exactly. A golden
made on one kind of CPU would fail the `cpu` target on the other wherever a pair
can saturate. So a golden records the outputs of both arithmetics when they
differ, each made by ONNX Runtime itself where it can:

- this CPU's own arithmetic: a plain session;
- exact sums on a CPU without VNNI: `session.x64quantprecision = 1` (ONNX
  Runtime's own switch to its exact kernels);
- the AVX2 pairs on a CPU with VNNI: ONNX Runtime in a process run by
  `qemu-x86_64 -cpu Haswell-v4` (user-mode emulation of an AVX2 CPU without
  AVX-512 or VNNI; `runtime_worker.py` checks that ONNX Runtime there really
  sums in pairs). Without qemu-x86_64 (Debian package qemu-user), the tinyaccel
  emulator makes them, following ONNX Runtime's graph, and the golden says so.

Whether the two can differ at all is decided first, without running anything:
the emulator loads ONNX Runtime's graph of the model in the pairs arithmetic
and lists the kernels whose weights let a pair leave int16. Most models have
none (any model quantized with `reduce_range`), and keep one set of outputs.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..process import run_process, tail_text
from ..runtime import (
    ARITHMETICS,
    ArithmeticUnavailable,
    arithmetic_config,
    create_session,
    int8_accumulation,
    output_specs,
    run_session,
)

QEMU = "qemu-x86_64"
QEMU_CPU = "Haswell-v4"
"""An x86 CPU model with AVX2 and FMA but no AVX-512 or VNNI: ONNX Runtime takes its AVX2 int8 kernels."""
QEMU_TIMEOUT = 600.0
NATIVE = {
    "exact": "ONNX Runtime {version} on a CPU whose int8 kernels sum exactly (VNNI or ARM)",
    "avx2_int16_pairs": "ONNX Runtime {version} on an x86 CPU without VNNI",
}
PRECISE = "ONNX Runtime {version} with session.x64quantprecision = 1 (its exact int8 kernels on AVX2)"
EMULATED_CPU = f"ONNX Runtime {{version}} under {QEMU} -cpu {QEMU_CPU} (AVX2, no VNNI)"
EMULATOR = "the tinyaccel emulator on ONNX Runtime's graph (no qemu-x86_64 here to run ONNX Runtime's AVX2 kernels)"


@dataclass(frozen=True)
class Made:
    """Outputs of one arithmetic and what made them (the golden's `made_by`)."""

    arithmetic: str
    outputs: dict[str, np.ndarray]
    made_by: str


def _version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def arithmetics_differ(path: Path) -> bool:
    """Whether ONNX Runtime's two int8 arithmetics can give different outputs for this model:
    some int8 kernel of its graph has weights a saturating pair sum can meet. True when unsure."""
    from ..emulator import Graph, UnsupportedOpError

    try:
        graph = Graph.load(path, qdq="ort", accumulation="avx2_int16_pairs")
    except (UnsupportedOpError, ValueError, DataError):
        return True
    return bool(graph.saturating)


def outputs_in(path: Path, feed: dict[str, np.ndarray], arithmetic: str) -> Made:
    """ONNX Runtime's outputs of `path` for `feed` summed in `arithmetic` (see the module docstring)."""
    version = _version()
    try:
        config = arithmetic_config(arithmetic)
    except ArithmeticUnavailable:
        if shutil.which(QEMU) and sys.platform == "linux":
            return Made(arithmetic, _under_qemu(path, feed, arithmetic), EMULATED_CPU.format(version=version))
        return Made(arithmetic, _emulated(path, feed, arithmetic), EMULATOR)
    made_by = (PRECISE if config else NATIVE[arithmetic]).format(version=version)
    return Made(arithmetic, run_session(create_session(path, arithmetic=arithmetic), feed), made_by)


def other_arithmetic() -> str:
    """The arithmetic this CPU's ONNX Runtime does not take by itself."""
    here = int8_accumulation()
    return next(a for a in ARITHMETICS if a != here)


def _under_qemu(path: Path, feed: dict[str, np.ndarray], arithmetic: str) -> dict[str, np.ndarray]:
    ((_, x),) = feed.items()
    with tempfile.TemporaryDirectory(prefix="tinyaccel-qemu-") as tmp:
        work = Path(tmp)
        np.savez(work / "inputs.npz", x=x)
        argv = [QEMU, "-cpu", QEMU_CPU, sys.executable, "-m", "pytest_tinyaccel.runtime_worker"]
        argv += [str(Path(path).resolve()), str(work / "inputs.npz"), str(work / "outputs.npz"), arithmetic]
        result = run_process(argv, work, None, QEMU_TIMEOUT, work / "log.txt")
        if not result.ok:
            log = "\n    ".join(line for line in tail_text(work / "log.txt") if "TCG doesn't support" not in line)
            raise DataError(
                f"ONNX Runtime under {QEMU} -cpu {QEMU_CPU} (to make the {arithmetic} golden outputs of "
                f"{Path(path).name}) {result.status()}:\n    {log}\n  uninstall qemu-user to have the emulator "
                "make them instead, or make the golden on a CPU without VNNI"
            )
        with np.load(work / "outputs.npz", allow_pickle=False) as archive:
            values = [archive[f"arr_{i}"] for i in range(len(archive.files))]
    return {spec.name: value for spec, value in zip(output_specs(path), values, strict=True)}


def _emulated(path: Path, feed: dict[str, np.ndarray], arithmetic: str) -> dict[str, np.ndarray]:
    from ..emulator import Graph, UnsupportedOpError

    try:
        graph = Graph.load(path, qdq="ort", accumulation=arithmetic)
    except (UnsupportedOpError, ValueError) as exc:
        raise DataError(
            f"{Path(path).name}: its {arithmetic} int8 outputs need ONNX Runtime on a CPU without VNNI "
            f"({QEMU} is not installed) or the tinyaccel emulator, which cannot run it: {exc}; install "
            "qemu-user, or make the golden on a CPU without VNNI"
        ) from exc
    return graph.run(feed)
