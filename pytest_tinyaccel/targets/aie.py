"""`aie`: AMD AI Engine (AIE-ML) without the vendor tools.

sw_emu runs the tinyaccel emulator (int8: integer arithmetic with round-half-to-
even requantization and saturation, which the AIE-ML's SRS shift-round-saturate
path can be configured for); hw_emu adds the AIE-ML cost model: per-layer cycles
from ZigZag on one AIE-ML compute tile, the graph mapped to kernels on tiles
(layers split until their buffers fit 64 KiB of data memory) and composed as a
dataflow pipeline, with Kernels/Buffers/Stream/PLIO/GMIO from the mapping.
For aiesimulator/x86simulator themselves, configure a `command` target.
"""

from __future__ import annotations

from .emulated import EmulatedTarget


class AieTarget(EmulatedTarget):
    name = "aie"
    version = "1"
    resource_columns = ("Kernels", "Buffers", "Stream", "PLIO", "GMIO")
    emulation = "AIE-ML int8 semantics"
    cost_model = "ZigZag AIE-ML tile model"

    def perf_model(self):
        from ..costmodel import aie_perf

        return aie_perf
