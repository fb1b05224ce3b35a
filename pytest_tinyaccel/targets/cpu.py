"""`cpu`: the host CPU through ONNX Runtime (mode `hw`): measured, not simulated.

The build is ONNX Runtime's offline graph optimization (the optimized model is
saved into the build folder). Latency is the median of repeated single-sample
runs after warm-up; throughput is samples per second of batched runs (median
of several). Running in real time, it can also be measured by MLPerf LoadGen
(`loadgen_factory`: ONNX Runtime on the optimized model in LoadGen's worker).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Field, at_least, validate
from ..perf import Perf
from ..runtime import arithmetic_config, create_session, fixed_batch, int8_accumulation, load_onnx, run_session
from .base import Build, RunResult, Target, TargetError, TargetUnsupported

OPTIMIZED = "optimized.onnx"
SETTINGS: dict[str, Field] = {
    "threads": Field(int, 1, check=at_least(1)),
    "latency_runs": Field(int, 50, check=at_least(1)),
    "warmup": Field(int, 5, check=at_least(0)),
    "throughput_batch": Field(int, 256, check=at_least(1)),
    "throughput_runs": Field(int, 5, check=at_least(1)),
    # "native": ONNX Runtime's own int8 kernels for this CPU; "exact": its exact ones on x86 CPUs without VNNI too
    # (session.x64quantprecision; slower there), the ONNX specification's sums on every CPU.
    "int8_arithmetic": Field(str, "native", choices=("native", "exact")),
}


class CpuTarget(Target):
    name = "cpu"
    version = "1"
    modes = ("hw",)

    def __init__(self, **settings: Any) -> None:
        self.settings = validate(settings, SETTINGS, f"[tool.tinyaccel.targets.{self.name}]")

    def simulator(self, mode: str) -> str:
        import onnxruntime

        kernels = ", exact int8 kernels" if self.settings["int8_arithmetic"] == "exact" else ""
        return f"ONNX Runtime {onnxruntime.__version__} CPU{kernels}, {self.settings['threads']} thread(s), measured"

    def cache_settings(self, model, dtype: str, mode: str) -> dict[str, Any]:
        import onnxruntime

        # Timing settings do not change the optimized model; only ORT's version, threads and kernels might.
        return {"onnxruntime": onnxruntime.__version__, "threads": self.settings["threads"], "config": self._config()}

    def int8_arithmetic(self, build: Build) -> str | None:
        return int8_accumulation() if self.settings["int8_arithmetic"] == "native" else "exact"

    def _config(self) -> dict[str, str]:
        """Session configuration for the `int8_arithmetic` setting."""
        return arithmetic_config("exact") if self.settings["int8_arithmetic"] == "exact" else {}

    def build(self, build: Build) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(build.dir / OPTIMIZED)
        # weights kept in external data go into the build folder too, not left pointing at the model's own files
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", f"{OPTIMIZED}.data")
        for key, value in self._config().items():
            options.add_session_config_entry(key, value)
        try:
            ort.InferenceSession(str(build.onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own pybind exception types
            from ..qonnx_route import QONNX_DOMAINS

            qonnx = sorted({n.op_type for n in load_onnx(build.onnx_path).graph.node if n.domain in QONNX_DOMAINS})
            if qonnx:  # a QONNX model qonnx could not express in ONNX's quantization ops
                raise TargetUnsupported(
                    f"cpu cannot run {build.model.name} ({build.dtype}): ONNX Runtime has no kernel for QONNX's "
                    f"{', '.join(qonnx)} (its golden comes from qonnx's executor)"
                ) from exc
            raise TargetError(f"ONNX Runtime cannot build {build.onnx_path.name}: {exc}") from exc

    def run(self, build: Build, inputs: dict[str, np.ndarray]) -> RunResult:
        s = self.settings
        session = create_session(build.dir / OPTIMIZED, threads=s["threads"], config=self._config())
        outputs = run_session(session, inputs, batch=s["throughput_batch"])
        ((name, x),) = inputs.items()
        fixed = fixed_batch(session)  # a fixed-batch model's one inference takes its whole batch
        one = {name: np.resize(x[: fixed or 1], (fixed or 1, *x.shape[1:]))}
        for _ in range(s["warmup"]):
            session.run(None, one)
        latencies = []
        for _ in range(s["latency_runs"]):
            start = time.perf_counter_ns()
            session.run(None, one)
            latencies.append(time.perf_counter_ns() - start)
        batch = {name: x[: s["throughput_batch"]]}
        rates = []
        for _ in range(s["throughput_runs"]):
            start = time.perf_counter_ns()
            run_session(session, batch, batch=s["throughput_batch"])
            rates.append(len(batch[name]) * 1e9 / (time.perf_counter_ns() - start))
        perf = Perf(
            simulator=self.simulator(build.mode),
            latency_ns=float(statistics.median(latencies)),
            throughput=float(statistics.median(rates)),
            extra={"latency_runs": s["latency_runs"], "throughput_batch": len(batch[name])},
        )
        return RunResult(outputs=outputs, perf=perf)

    def loadgen_factory(self, build: Build) -> tuple[str, dict[str, Any]]:
        return f"{__name__}:cpu_infer", {"model_path": str(build.dir / OPTIMIZED), "threads": self.settings["threads"]}


def cpu_infer(model_path: str, threads: int = 1) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """LoadGen SUT factory for the cpu target: ONNX Runtime on its optimized model
    (same session options as the cpu target's own timing)."""
    session = create_session(Path(model_path), threads=threads)
    name = session.get_inputs()[0].name

    def infer(batch: np.ndarray) -> dict[str, np.ndarray]:
        return run_session(session, {name: batch}, batch=max(1, len(batch)))

    return infer
