"""`gemmini`: the Gemmini systolic-array generator's default configuration.

sw_emu runs the tinyaccel emulator with Gemmini's int8 semantics (int8 x int8
into int32 accumulators, a float scale on the way out of the accumulator,
round-half-to-even and saturation); hw_emu adds per-layer cycles from ZigZag on
Gemmini's default 16x16 weight-stationary array (256 KiB scratchpad, 64 KiB
accumulator, 16 B/cycle bus), layers composed sequentially, non-matrix ops
charged at bus speed. For Gemmini on spike or FireSim, configure a `command`
target.
"""

from __future__ import annotations

from .emulated import EmulatedTarget


class GemminiTarget(EmulatedTarget):
    name = "gemmini"
    version = "2"  # 2: Conv1D and LSTM costing
    resource_columns = ("PEs", "Layers", "Scratchpad KiB", "Accumulator KiB")
    emulation = "Gemmini int8 semantics"
    cost_model = "ZigZag Gemmini 16x16 WS model"

    def perf_model(self):
        from ..costmodel import gemmini_perf

        return gemmini_perf
