"""`cpu`: the host CPU through ONNX Runtime (mode `hw`): measured, not simulated.

The build is ONNX Runtime's offline graph optimization (the optimized model is
saved into the build folder). Latency is the median of repeated single-sample
runs after warm-up; throughput is samples per second of batched runs (median
of several).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from ..runtime import create_session, run_session
from .base import Build, Perf, RunResult, Target, TargetError

OPTIMIZED = "optimized.onnx"


class CpuTarget(Target):
    name = "cpu"
    version = "1"
    modes = ("hw",)
    description = "ONNX Runtime CPU execution provider"

    def __init__(self, threads: int = 1, latency_runs: int = 50, warmup: int = 5,
                 throughput_batch: int = 256, throughput_runs: int = 5) -> None:
        self.settings: dict[str, Any] = {"threads": threads, "latency_runs": latency_runs, "warmup": warmup,
                                         "throughput_batch": throughput_batch, "throughput_runs": throughput_runs}
        for key, value in self.settings.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "warmup" else 1):
                raise TypeError(f"cpu setting {key} must be a positive integer, got {value!r}")

    def simulator(self, mode: str) -> str:
        import onnxruntime

        return f"ONNX Runtime {onnxruntime.__version__} CPU, {self.settings['threads']} thread(s), measured"

    def cache_settings(self, model, dtype: str, mode: str) -> dict[str, Any]:
        import onnxruntime

        # Timing settings do not change the optimized model; only ORT's version and threads might.
        return {"onnxruntime": onnxruntime.__version__, "threads": self.settings["threads"]}

    def build(self, build: Build) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(build.dir / OPTIMIZED)
        try:
            ort.InferenceSession(str(build.onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own pybind exception types
            raise TargetError(f"ONNX Runtime cannot build {build.onnx_path.name}: {exc}") from exc

    def run(self, build: Build, inputs: dict[str, np.ndarray]) -> RunResult:
        s = self.settings
        session = create_session(build.dir / OPTIMIZED, threads=s["threads"])
        outputs = run_session(session, inputs, batch=s["throughput_batch"])
        (name, x), = inputs.items()
        one = {name: x[:1]}
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
        perf = Perf(simulator=self.simulator(build.mode), latency_ns=float(statistics.median(latencies)),
                    throughput=float(statistics.median(rates)),
                    extra={"latency_runs": s["latency_runs"], "throughput_batch": len(batch[name])})
        return RunResult(outputs=outputs, perf=perf)
