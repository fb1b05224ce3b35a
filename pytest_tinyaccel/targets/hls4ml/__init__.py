"""`hls4ml`: the model as hls4ml-generated HLS C++ in fixed point, for FPGA flows.

    target.py     the Target (options per model, build and run through the worker, perf)
    settings.py   fixed-point types, the validated options, derived tolerances, tools on PATH
    worker.py     the subprocess that builds and runs (python -m pytest_tinyaccel.targets.hls4ml.worker)
    build.py      the worker's build stages (normalise, clean up, convert, compile, synthesise)
    normalise.py  the ONNX normalisation and what hls4ml cannot convert
    prepare.py    qonnx's clean-up, channels-last rewrites, 8-bit calibration

Importing this package never imports hls4ml or qonnx: only the worker process does.
docs/hls4ml.md has the details.
"""

from .settings import HLS_TOOLS, INSTALL_HINT, FixedPoint, calibrated_input, derived_atol, parse_fixed
from .target import Hls4mlTarget

__all__ = ["HLS_TOOLS", "INSTALL_HINT", "FixedPoint", "Hls4mlTarget", "calibrated_input", "derived_atol", "parse_fixed"]
