"""Run ONNX Runtime on saved inputs in a process of its own, and check which int8 arithmetic it used.

    python -m pytest_tinyaccel.runtime_worker MODEL INPUTS.npz OUTPUTS.npz ARITHMETIC

INPUTS.npz holds the model's single input as `x`; OUTPUTS.npz gets the outputs in the session's order.

`goldens/arithmetic.py` starts it under an emulated CPU (qemu-x86_64 with a
Haswell model: AVX2, no VNNI), where ONNX Runtime takes the kernels of a CPU
without VNNI. It refuses (exit 3) when this process's ONNX Runtime does not sum
int8 products in ARITHMETIC, so an emulator that exposes other features can
never pass for one that does not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .runtime import create_session, int8_accumulation, run_session


def main(argv: list[str]) -> int:
    model, inputs, outputs, arithmetic = argv
    found = int8_accumulation()
    if found != arithmetic:
        print(f"ONNX Runtime here sums int8 products as {found!r}, not {arithmetic!r}", file=sys.stderr)
        return 3
    session = create_session(Path(model))
    with np.load(inputs, allow_pickle=False) as archive:
        feed = {session.get_inputs()[0].name: archive["x"]}
    result = run_session(session, feed)
    np.savez(outputs, *result.values())  # arr_0, arr_1 ...: the session's output order
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
