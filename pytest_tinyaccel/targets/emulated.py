"""What the shipped accelerator targets (`aie`, `gemmini`) share: outputs from the
tinyaccel NumPy emulator, timing from a cost model, and the first-diverging-layer
report when a golden check fails.

A target module subclasses `EmulatedTarget` and names its cost model; it never
imports another target module.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Field, validate
from ..errors import DataError
from ..perf import Perf
from ..quantinfo import other_than_8_bit
from .base import Build, RunResult, Target, TargetError, TargetUnsupported

PERF_FILE = "perf.json"


def _rounding_rules(table: dict[str, Any]) -> str | None:
    from ..emulator import ROUNDING_MODES

    bad = {k: v for k, v in table.items() if v not in ROUNDING_MODES}
    return f"node name = rule, with rules from {list(ROUNDING_MODES)}; got {bad}" if bad else None


@lru_cache(maxsize=32)
def _graph(path: str, rounding: tuple[tuple[str, str], ...], qdq: str, accumulation: str):
    from ..emulator import Graph

    return Graph.load(Path(path), rounding=dict(rounding), qdq=qdq, accumulation=accumulation)


def _accumulation_choices(settings: dict[str, Any]) -> tuple[str, ...]:
    """The int8_accumulation values; the emulator's modes are looked up only when the setting is given (the
    emulator's modules then load: a run whose configuration leaves it at "golden" does not load them)."""
    if "int8_accumulation" not in settings:
        return ("golden",)
    from ..emulator import ACCUMULATION_MODES

    return ("golden", *ACCUMULATION_MODES)


ACCUMULATION_NOTE = {
    "avx2_int16_pairs": "int8 sums as the golden's ONNX Runtime on AVX2 without VNNI: int16-saturating pairs"
}


class EmulatedTarget(Target):
    """sw_emu: the emulator's outputs; hw_emu: the same outputs plus the cost model's Perf."""

    modes = ("sw_emu", "hw_emu", "hw")
    emulation = ""
    """How the emulator's arithmetic models this hardware (report header)."""
    cost_model = ""
    """What produces hw_emu timing (report header)."""

    def __init__(self, **settings: Any) -> None:
        schema = {
            "rounding": Field(dict, {}, check=_rounding_rules),
            "qdq": Field(str, "ort", choices=("float", "integer", "ort")),
            "int8_accumulation": Field(str, "golden", choices=_accumulation_choices(settings)),
            **self.cost_model_settings(),
        }
        self.settings: dict[str, Any] = validate(settings, schema, f"[tool.tinyaccel.targets.{self.name}]")

    def cache_settings(self, model: Any, dtype: str, mode: str) -> dict[str, Any]:
        """The emulator's arithmetic version and ONNX Runtime's (whose optimizer gives the graph of a
        quantized model, `ortgraph.py`) change simulated outputs too."""
        import onnxruntime

        from ..emulator import EMULATOR_VERSION

        return {
            **super().cache_settings(model, dtype, mode),
            "emulator": EMULATOR_VERSION,
            "onnxruntime": onnxruntime.__version__,
        }

    def cost_model_settings(self) -> dict[str, Field]:
        """Settings of this target's cost model, added to the emulator's (none by default)."""
        return {}

    def perf_model(self) -> Callable[..., Perf]:
        """The cost model: f(float_model_path, dtype, cache_dir=...) -> Perf."""
        raise NotImplementedError

    def hw_emu_perf(self, build: Build) -> Perf:
        """hw_emu timing of `build`: by default the cost model on the float model for the dtype."""
        return self.perf_model()(build.model.onnx_path, build.dtype, cache_dir=build.shared_dir)

    def availability(self, mode: str) -> str | None:
        if mode == "hw":
            return (
                f"{self.name} hw needs the vendor's device flow: configure it as a `command` target "
                "(see docs/command-target.md)"
            )
        if mode == "hw_emu":
            from ..costmodel import zigzag_unavailable

            return zigzag_unavailable()
        return None

    def simulator(self, mode: str) -> str:
        return f"tinyaccel emulator ({self.emulation})" + (f" + {self.cost_model}" if mode == "hw_emu" else "")

    def accumulation(self, build: Build) -> str:
        """The int8 summation the emulator uses: the golden's by default, so that the
        emulator is held to ONNX Runtime's own arithmetic on the CPU that made the golden."""
        setting = self.settings["int8_accumulation"]
        return build.int8_accumulation if setting == "golden" else setting

    def int8_arithmetic(self, build: Build) -> str | None:
        return self.accumulation(build)

    def _load(self, build: Build, accumulation: str | None = None):
        from ..emulator import UnsupportedOpError, UnsupportedTypeError

        try:
            return _graph(
                str(build.onnx_path),
                tuple(sorted(self.settings["rounding"].items())),
                self.settings["qdq"],
                accumulation or self.accumulation(build),
            )
        except (UnsupportedOpError, UnsupportedTypeError) as exc:
            raise TargetUnsupported(self._refusal(build, exc)) from exc
        except (ValueError, DataError) as exc:
            raise TargetError(f"{self.name}: {exc}") from exc

    def _refusal(self, build: Build, error: Exception) -> str:
        """One line: every op type of the model the emulator lacks, with counts, or the type it cannot hold."""
        import onnx

        from ..emulator import unsupported_ops

        missing = unsupported_ops(onnx.load(str(build.onnx_path), load_external_data=False))
        if not missing:
            return f"{self.name} cannot run {build.onnx_path.name}: {str(error).splitlines()[0]}"
        listed = ", ".join(f"{op} x{n}" for op, n in sorted(missing.items()))
        return f"{self.name} cannot run {build.model.name} ({build.dtype}): the emulator has no kernel for {listed}"

    def build(self, build: Build) -> None:
        """Validate every node now (an unsupported op fails the build, naming op and node),
        and for hw_emu run the cost model (`hw_emu_perf`)."""
        self._load(build)
        if build.mode == "hw_emu":
            try:
                perf = self.hw_emu_perf(build)
            except ValueError as exc:  # the cost model's own, worded refusals
                raise TargetError(f"{self.name} cost model: {exc}") from exc
            except Exception as exc:  # a third-party cost tool (ZigZag) failing on a layer shape it does not know
                raise TargetError(
                    f"{self.name} cost model cannot cost {build.model.name} ({build.dtype}): {type(exc).__name__}: "
                    f"{exc}; sw_emu still runs this model; report the layer shapes it holds"
                ) from exc
            (build.dir / PERF_FILE).write_text(json.dumps(perf.to_dict()))

    def run(self, build: Build, inputs: dict[str, np.ndarray]) -> RunResult:
        outputs = self._load(build).run(inputs)
        if build.mode == "hw_emu":
            perf = Perf.from_dict(json.loads((build.dir / PERF_FILE).read_text()))
        else:
            perf = Perf(simulator=self.simulator(build.mode))
        note = ACCUMULATION_NOTE.get(self.accumulation(build)) if build.dtype != "fp32" else None
        if note:
            perf.simulator += f"; {note}"
        bits = build.model.int8_bits
        if build.dtype == "int8" and build.mode == "hw_emu" and other_than_8_bit(bits):
            perf.simulator += (
                f"; {build.model.name} is {bits}: costed at 8 bits (the device model has no narrower datapath)"
            )
        return RunResult(outputs, perf)

    def localize(
        self, build: Build, inputs: dict[str, np.ndarray], tolerance: dict[str, float], layers: dict[str, np.ndarray]
    ) -> str | None:
        """Compare every layer with ONNX Runtime's intermediate tensors, the stored per-kernel
        golden first, then on all golden samples; name the first layer that diverges."""
        from ..emulator import first_divergence
        from ..intermediates import ort_intermediates
        from ..runtime import ArithmeticUnavailable, arithmetic_config

        graph = self._load(build)
        found = None
        if layers:  # the stored per-kernel golden covers the first samples only
            first = {k: v[: build.model.layer_samples] for k, v in inputs.items()}
            found = first_divergence(
                graph.run(first, intermediates=True)[1], layers, graph.nodes, tolerance["atol"], tolerance["rtol"]
            )
        if found is None:  # against this machine's ONNX Runtime, in the emulated arithmetic where it can make it
            arithmetic = self.accumulation(build)
            try:
                arithmetic_config(arithmetic)
            except ArithmeticUnavailable:
                arithmetic = "exact"
            graph = self._load(build, arithmetic)
            _, ours = graph.run(inputs, intermediates=True)
            reference = ort_intermediates(build.onnx_path, inputs, arithmetic)
            found = first_divergence(ours, reference, graph.nodes, tolerance["atol"], tolerance["rtol"])
        return found.describe() if found else "every intermediate tensor matches ONNX Runtime; only the outputs differ"
