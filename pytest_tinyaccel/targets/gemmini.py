"""`gemmini`: the Gemmini systolic-array generator, its default configuration by default.

sw_emu runs the tinyaccel emulator with Gemmini's int8 semantics (int8 x int8 into int32
accumulators, a float scale on the way out of the accumulator, round-half-to-even and
saturation). hw_emu adds per-layer cycles, layers composed sequentially, non-matrix ops
charged at bus speed (`costmodel/gemmini.py`): by default predicted from the tiling
Gemmini's own library chooses, with constants fitted on FireSim per-layer measurements
(the report says so, with the held-out error); or ZigZag's best mapping. For Gemmini on
spike or FireSim, configure a `command` target.

Settings (`[tool.tinyaccel.targets.gemmini]`), besides the emulator's:
`timing = "library"` (default) or `"zigzag"` (needs the `zigzag` extra);
`config = "path/to/gemmini.toml"` (a Gemmini configuration; default: Gemmini's default
configuration for int8, its fp32 configuration for fp32); `constants = "path.toml"`
(timing constants from `python -m pytest_tinyaccel.costmodel gemmini-fit`). A relative
path is taken from the directory pytest runs in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..cache import file_sha256
from ..config import Field
from ..perf import Perf
from .base import Build
from .emulated import EmulatedTarget


def _file_problem(kind: str):
    """A setting's check: the file it names must load (the loader's message says what is wrong)."""

    def check(value: str) -> str | None:
        if not value:
            return None
        from ..costmodel import gemmini_config, gemmini_timing

        try:
            gemmini_config.load_config(value) if kind == "config" else gemmini_timing.load_timing(value)
        except ValueError as exc:
            return str(exc)
        return None

    return check


class GemminiTarget(EmulatedTarget):
    name = "gemmini"
    version = "4"  # 4: a layer's tile dimensions as extra["tile_shape"]
    resource_columns = ("PEs", "Layers", "Scratchpad KiB", "Accumulator KiB")
    emulation = "Gemmini int8 semantics"
    cost_model = "Gemmini library-tiling model"

    def cost_model_settings(self) -> dict[str, Field]:
        return {
            "timing": Field(str, "library", choices=("library", "zigzag")),
            "config": Field(str, "", check=_file_problem("config")),
            "constants": Field(str, "", check=_file_problem("constants")),
        }

    def availability(self, mode: str) -> str | None:
        if mode == "hw_emu" and self.settings["timing"] == "library":
            return None  # the library-tiling model needs no optional extra
        return super().availability(mode)

    def cache_settings(self, model: Any, dtype: str, mode: str) -> dict[str, Any]:
        """The configuration and constants files' content (not only their names) change the build."""
        from ..costmodel.gemmini_config import config_file
        from ..costmodel.gemmini_timing import DEFAULT_TIMING

        settings = super().cache_settings(model, dtype, mode)
        settings["timing"] = self.settings["timing"]
        shipped = {"config": config_file(dtype) if dtype in ("int8", "fp32") else None, "constants": DEFAULT_TIMING}
        for key in ("config", "constants"):
            path = Path(self.settings[key]) if self.settings[key] else shipped[key]
            settings[f"{key}_sha256"] = file_sha256(path) if path else None
        return settings

    def perf_model(self):
        from ..costmodel import gemmini_perf

        return gemmini_perf

    def hw_emu_perf(self, build: Build) -> Perf:
        return self.perf_model()(
            build.model.onnx_path,
            build.dtype,
            cache_dir=build.shared_dir,
            timing=self.settings["timing"],
            config=self.settings["config"] or None,
            constants=self.settings["constants"] or None,
        )
