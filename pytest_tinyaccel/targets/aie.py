"""`aie`: AMD AI Engine without the vendor tools.

sw_emu runs the tinyaccel emulator (int8: integer arithmetic with round-half-to-
even requantization and saturation, which the AI Engine's shift-round-saturate
path can be configured for). hw_emu adds the kernel-level model of the AIE
dataflow graph (`costmodel/aie/`): the model the target runs (the quantized graph
for int8) mapped to onnx2versal's compute and data-movement kernels, each kernel's
own cycles from its loop nest (constants fitted on isolated kernel runs), the graph
simulated row by row for latency and steady-state throughput, the ideal bound and
the held-out error beside them, Kernels/Buffers/Stream/PLIO/GMIO from the mapping.
For aiesimulator/x86simulator themselves, configure a
`command` target.

Settings (`[tool.tinyaccel.targets.aie]`), besides the emulator's:
`device = "vck190"` (default: first-generation AI Engine, XCVC1902 at 1.25 GHz)
or `"aie-ml"`; `calibration = "path/to/calibration.toml"` (the per-class calibration
for kernels with no onnx2versal template; default: the shipped one, fitted on
onnx2versal's VCK190 kernel logs; make your own with
`python -m pytest_tinyaccel.costmodel calibrate`). A relative path is taken
from the directory pytest runs in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..cache import file_sha256
from ..config import Field
from ..perf import Perf
from .base import Build
from .emulated import EmulatedTarget

DEVICES = ("vck190", "aie-ml")


def _calibration_problem(value: str) -> str | None:
    if not value:
        return None
    from ..costmodel.aie.calibration import load

    try:
        load(value)
    except ValueError as exc:
        return str(exc)
    return None


class AieTarget(EmulatedTarget):
    name = "aie"
    version = "4"  # 4: loop-nest kernels and token-level simulation
    resource_columns = ("Kernels", "Buffers", "Stream", "PLIO", "GMIO")
    emulation = "AI Engine int8 semantics"
    cost_model = "AIE dataflow model"

    def cost_model_settings(self) -> dict[str, Field]:
        return {
            "device": Field(str, "vck190", choices=DEVICES),
            "calibration": Field(str, "", check=_calibration_problem),
        }

    def availability(self, mode: str) -> str | None:
        if mode == "hw_emu":
            return None  # the AIE model needs no optional extra
        return super().availability(mode)

    def cache_settings(self, model: Any, dtype: str, mode: str) -> dict[str, Any]:
        """The calibration file's content (not only its name) changes the build."""
        settings = super().cache_settings(model, dtype, mode)
        path = self.settings["calibration"]
        settings["calibration_sha256"] = file_sha256(Path(path)) if path else "shipped"
        return settings

    def perf_model(self):
        from ..costmodel import aie_perf

        return aie_perf

    def hw_emu_perf(self, build: Build) -> Perf:
        """The model the target executes (quantized for int8) on the configured device."""
        return self.perf_model()(
            build.onnx_path,
            build.dtype,
            device=self.settings["device"],
            calibration=self.settings["calibration"] or None,
        )
