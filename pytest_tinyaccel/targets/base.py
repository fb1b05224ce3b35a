"""The target API: what a hardware team implements to plug its flow into the suite.

A target builds a model for one dtype and mode into a folder (cached by content
hash by the caller), then runs inputs through that build and returns outputs and
a `Perf` record. It never imports pytest, and never another target module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..config import validate
from ..perf import Perf

if TYPE_CHECKING:
    from ..models import Model

MODES = ("sw_emu", "hw_emu", "hw")
"""sw_emu: functional simulation; hw_emu: cycle-approximate (adds timing and
resources); hw: a real device (or the host CPU for the `cpu` target)."""


class TargetError(Exception):
    """A build or run failed for a reason the user can act on (message says how)."""


class TargetUnsupported(TargetError):
    """The target cannot run this model at all (ops, types or layers it does not support): the case is a
    skip with the reason, not a failure, unless the run is strict about support. The message is one line
    that names what is unsupported."""

    refusal = True  # the build cache counts it as refused, not failed


@dataclass
class Build:
    """A finished build: its folder and what it was built from."""

    model: Model
    dtype: str
    mode: str
    onnx_path: Path
    """The model the target executes: the float model for fp32, the quantized
    (or author-supplied int8) model for int8."""
    dir: Path
    """The build's own folder inside the build cache; persistent across runs."""
    shared_dir: Path | None = None
    """A cache folder the target shares across its builds (e.g. cost-model results)."""
    int8_accumulation: str = "exact"
    """The int8 arithmetic of the golden's main outputs: "exact" or "avx2_int16_pairs" (ONNX Runtime
    on x86 AVX2 without VNNI; see emulator/accumulation.py). A functional model held to the golden
    bit for bit reproduces it; hardware ignores it."""


@dataclass
class RunResult:
    """What a target returns: the graph's outputs by name, and its perf record."""

    outputs: dict[str, np.ndarray]
    perf: Perf | None = None


class Target:
    """Base class of all targets. Subclass, set `name`/`modes`, implement `build`/`run`.

    Settings come from `[tool.tinyaccel.targets.<name>]` in pyproject.toml and
    reach `__init__` as keyword arguments; they are part of every cache key.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    """Bump when a change invalidates cached builds."""
    modes: ClassVar[tuple[str, ...]] = ()
    resource_columns: ClassVar[tuple[str, ...]] = ()
    """The resource counts `Perf.resources` holds, in the order of the report's column."""
    default_tolerance: ClassVar[dict[str, dict[str, float]]] = {}
    """Per-dtype default atol/rtol, for targets whose arithmetic cannot meet 1e-5."""

    def __init__(self, **settings: Any) -> None:
        self.settings: dict[str, Any] = validate(settings, {}, f"[tool.tinyaccel.targets.{self.name}]")

    def int8_arithmetic(self, build: Build) -> str | None:
        """The int8 arithmetic of ONNX Runtime's that this target's outputs follow ("exact" or
        "avx2_int16_pairs"), so that they are checked against the golden's outputs of that arithmetic
        where the golden keeps both; None (hardware, by default): the golden's main outputs."""
        return None

    def default_tolerance_for(self, model: Model, dtype: str) -> dict[str, float]:
        """Default atol/rtol for `model` in `dtype` (e.g. derived from a per-model precision)."""
        return self.default_tolerance.get(dtype, {})

    def availability(self, mode: str) -> str | None:
        """None if `mode` can run on this machine, else the reason (shown as a skip)."""
        return None

    def case_availability(self, model: Model, dtype: str, mode: str) -> str | None:
        """None if this model in this dtype can run in `mode` here, else the reason (a skip):
        for targets whose devices carry only some models (a board flashed with one)."""
        return None

    def simulator(self, mode: str) -> str:
        """Which simulator or device produces results for `mode` (report header)."""
        return f"{self.name} {mode}"

    def cache_settings(self, model: Model, dtype: str, mode: str) -> dict[str, Any]:
        """Everything besides model bytes and dtype that changes the build."""
        return {"settings": self.settings, "options": model.target_options(self.name)}

    def build(self, build: Build) -> None:
        """Write everything execution needs into `build.dir` (empty, private)."""

    def run(self, build: Build, inputs: dict[str, np.ndarray]) -> RunResult:
        raise NotImplementedError

    def deterministic(self, mode: str) -> bool:
        """True when `run` gives the same outputs and figures for the same build and inputs, so the
        runner may keep its result (a simulator); False for what is measured (a device, the host)."""
        return mode != "hw"

    def loadgen_factory(self, build: Build) -> tuple[str, dict[str, Any]] | None:
        """For MLPerf LoadGen (`--tinyaccel-loadgen`): ("module:function", kwargs) of a factory
        that returns the inference callable for `build`, run in a worker process; None when
        the target does not run in real time (a simulator's wall time means nothing)."""
        return None

    def localize(
        self, build: Build, inputs: dict[str, np.ndarray], tolerance: dict[str, float], layers: dict[str, np.ndarray]
    ) -> str | None:
        """After a golden mismatch: which layer diverged first, if the target can tell.

        `inputs` are the golden samples; `layers` is the per-kernel golden (ONNX Runtime's
        value of every intermediate tensor, by name, for the first `model.layer_samples`
        of them; empty when the golden stores none)."""
        return None
