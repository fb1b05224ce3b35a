"""`hls4ml`: the model as hls4ml-generated HLS C++ in fixed point, for FPGA flows.

`sw_emu` is hls4ml's bit-accurate C simulation (the design compiled with g++);
`hw_emu` adds C synthesis and C/RTL co-simulation with Vitis or Vivado HLS when
one is on PATH, for latency, interval, clock and resources. int8 goes through
hls4ml's QONNX front end with the int8 model's own quantization (route.py): a
QONNX model as it is, a QDQ one converted by qonnx, the plugin's QOperator model
as its QDQ twin from the same calibration.

Builds and runs happen in a worker subprocess (worker.py, its build stages in build.py), because
the compiled library calls exit(1) on a missing weight file and a compiler or
simulator can hang or crash: each becomes a failed test with the log's tail,
never a dead session. Fixed point does not meet 1e-5, so the default tolerance
is derived from the precision (`option_atol`). docs/hls4ml.md has the details:
the qonnx clean-up and graph rewrite, the options, the precision choices, the
tolerance derivation and the errors measured.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...cache import atomic_write_text, file_sha256
from ...perf import Perf
from ...process import StartError, run_process, tail_text
from ..base import Build, RunResult, Target, TargetError, TargetUnsupported
from .settings import (
    CSIM_OPTIMISATION,
    DEFAULT_BUILD_TIMEOUT,
    INSTALL_HINT,
    NOT_IN_KEY,
    QUANTIZED_FLOAT,
    UNSUPPORTED,
    calibrated_input,
    compiler_version,
    find_hls_tool,
    option_atol,
    package_version,
    parse_fixed,
    validate_options,
)

if TYPE_CHECKING:
    from ...models import Model

WORKER_MODULE = "pytest_tinyaccel.targets.hls4ml.worker"
META = "hls4ml.json"
PERF = "perf.json"
ERROR = "error.json"
BUILD_LOG = "build.log"
LOG_TAIL_LINES = 40
REFUSED = ".unsupported"
"""Suffix of the file beside a build's cache folder that keeps the one-line refusal of a model hls4ml
cannot convert (`Hls4mlTarget.build`)."""


class Hls4mlTarget(Target):
    name = "hls4ml"
    version = "3"  # 2: normalised ONNX, outputs matched by name; 3: int8 through QONNX
    modes = ("sw_emu", "hw_emu")

    def __init__(self, **settings: Any) -> None:
        self.settings = validate_options(settings, f"[tool.tinyaccel.targets.{self.name}]")

    # ----- options ---------------------------------------------------------------------

    def options(self, model: Model) -> dict[str, Any]:
        """Target settings overridden by the model's `[targets.hls4ml]` table, validated
        (a wrong key or value is a ConfigError naming the manifest)."""
        own = model.target_options(self.name)
        checked = validate_options(own, model.manifest_path, f"targets.{self.name}.")
        return {**self.settings, **{key: checked[key] for key in own}}

    def default_tolerance_for(self, model: Model, dtype: str) -> dict[str, float]:
        """The default tolerance derived from the model's effective precision (docs/hls4ml.md)."""
        return {"atol": option_atol(self.options(model), dtype)}

    def _input_precision(self, model: Model, options: dict[str, Any], precision: str) -> tuple[str, str]:
        base = parse_fixed(precision)
        if options["input_precision"] != "auto":
            return options["input_precision"], "input_precision setting"
        if model.calibration_path is None:
            return str(base), "precision (the model has no calibration set)"
        data = np.asarray(model.load_calibration(), dtype=np.float64)
        try:
            return str(
                calibrated_input(base, float(np.max(np.abs(data))) if data.size else 0.0)
            ), f"calibrated on {model.calibration_path.name}"
        except ValueError as exc:
            raise TargetError(f"{model.calibration_path}: {exc}") from None

    # ----- Target API ----------------------------------------------------------------------

    def availability(self, mode: str) -> str | None:
        if importlib.util.find_spec("hls4ml") is None or importlib.util.find_spec("qonnx") is None:
            return INSTALL_HINT
        if shutil.which("g++") is None:
            return "hls4ml's C simulation needs g++ on PATH (not found)"
        if mode == "hw_emu" and find_hls_tool() is None:
            return "hw_emu needs Vitis HLS or Vivado HLS on PATH (vitis_hls / vitis-run / vivado_hls not found)"
        return None

    def simulator(self, mode: str) -> str:
        version = package_version("hls4ml") or "?"
        if mode == "hw_emu":
            tool = find_hls_tool()
            return (
                f"hls4ml {version} C/RTL co-simulation ({tool[0] if tool else 'no HLS tool'}), "
                f"{self.settings['precision']}"
            )
        return f"hls4ml {version} C simulation (g++), {self.settings['precision']}"

    def cache_settings(self, model: Model, dtype: str, mode: str) -> dict[str, Any]:
        options = self.options(model)
        parts: dict[str, Any] = {
            "options": {k: v for k, v in options.items() if k not in NOT_IN_KEY},
            "hls4ml": package_version("hls4ml"),
            "qonnx": package_version("qonnx"),
            "onnx": package_version("onnx"),
            "compiler": compiler_version(),
            "optimisation": CSIM_OPTIMISATION,
        }
        if options["input_precision"] == "auto" and model.calibration_path is not None:
            parts["calibration_sha256"] = file_sha256(model.calibration_path)
        if dtype == "int8" and model.int8_onnx_path is None:
            # The QDQ twin (route.py): ONNX Runtime's quantization of the float model, made in the build.
            parts.update(float_model_sha256=model.sha256, onnxruntime=package_version("onnxruntime"))
        if mode == "hw_emu":
            tool = find_hls_tool()
            parts["hls_tool"] = list(tool) if tool else None
        return parts

    def worker_argv(self, *args: str) -> list[str]:
        """The worker command line (a test can point it elsewhere)."""
        return [sys.executable, "-m", WORKER_MODULE, *args]

    def build(self, build: Build) -> None:
        """`_build`, or the refusal it gave before: what hls4ml cannot convert is a deterministic
        function of the build's cache key (model bytes, options, tool versions), so a refused case
        is refused again from REFUSED beside the key's folder instead of starting qonnx and hls4ml
        (about 1.5 s a case) on every run."""
        refusal = build.dir.with_name(build.dir.name + REFUSED)
        if refusal.is_file():  # written atomically: whole or absent
            raise TargetUnsupported(refusal.read_text(encoding="utf-8"))
        try:
            self._build(build)
        except TargetUnsupported as exc:
            atomic_write_text(refusal, str(exc))
            raise

    def _build(self, build: Build) -> None:
        model = build.model
        options = self.options(model)
        spec: dict[str, Any] = {
            "onnx": str(build.onnx_path),
            "model": model.name,
            "dtype": build.dtype,
            "mode": build.mode,
            "options": options,
            "precision": options["precision"],
            "project": _project_name(model.name),
            "label": options["precision"],
        }
        if build.dtype == "int8":
            from .route import int8_route  # when an int8 design is made, not on every run

            route = int8_route(build)  # TargetUnsupported: a quantized model qonnx cannot read
            spec.update(onnx=str(route.onnx), quantized=route.kind, precision=QUANTIZED_FLOAT, label=route.label)
        chosen, source = self._input_precision(model, options, spec["precision"])
        spec.update(input_precision=chosen, input_precision_source=source)
        if build.mode == "hw_emu":
            tool = find_hls_tool()
            if tool is None:
                raise TargetError(self.availability("hw_emu") or "no HLS tool")
            spec["hls_tool"] = {"name": tool[0], "path": tool[1]}
            x = model.load_x(options["cosim_samples"])
            tb = build.dir / "tb_inputs.npy"
            np.save(tb, np.ascontiguousarray(x, dtype=np.float32), allow_pickle=False)
            spec["tb_inputs"] = str(tb)
        (build.dir / "spec.json").write_text(json.dumps(spec, indent=1))
        log = build.dir / BUILD_LOG
        try:
            self._call(
                self.worker_argv("build", str(build.dir)),
                build.dir,
                log,
                options["build_timeout"] or DEFAULT_BUILD_TIMEOUT[build.mode],
                f"hls4ml build of {model.name} ({build.dtype}, {build.mode})",
                error_file=build.dir / ERROR,
                refused=f"hls4ml cannot convert {model.name} ({build.dtype})",
            )
        except TargetError:
            # The cache wipes a failed build's folder: keep the log next to it.
            kept = build.dir.with_name(build.dir.name + ".failed.log")
            with contextlib.suppress(OSError):
                shutil.copyfile(log, kept)
            raise
        if not (build.dir / META).is_file():
            raise TargetError(f"hls4ml build of {model.name} finished without writing {META}; log: {log}")

    def run(self, build: Build, inputs: dict[str, np.ndarray]) -> RunResult:
        meta = json.loads((build.dir / META).read_text())
        options = self.options(build.model)
        names = [i["name"] for i in meta["inputs"]]
        if sorted(names) != sorted(inputs):
            raise TargetError(f"the hls4ml build takes inputs {names}, got {sorted(inputs)}")
        run_dir = Path(tempfile.mkdtemp(prefix=build.dir.name + ".run-", dir=build.dir.parent))
        for i, name in enumerate(names):
            x = np.ascontiguousarray(inputs[name], dtype=np.float32)
            np.save(run_dir / f"input_{i}.npy", x, allow_pickle=False)
        what = f"hls4ml C simulation of {build.model.name} ({build.dtype}, {build.mode})"
        self._call(
            # Every core, also beside another xdist worker: forked C simulations neither spin nor
            # share memory, so two on a busy core cost little, and the tail of a run gains both.
            self.worker_argv("run", str(build.dir), str(run_dir), str(os.cpu_count() or 1)),
            run_dir,
            run_dir / "run.log",
            options["run_timeout"],
            what,
            error_file=run_dir / ERROR,
        )
        try:
            outputs = {
                o["name"]: np.load(run_dir / f"output_{o['index']}.npy", allow_pickle=False).reshape([-1, *o["shape"]])
                for o in meta["outputs"]
            }
            done = json.loads((run_dir / "done.json").read_text())
        except (OSError, ValueError) as exc:
            raise TargetError(f"{what} left unreadable outputs in {run_dir}: {exc}") from None
        shutil.rmtree(run_dir, ignore_errors=True)
        return RunResult(outputs, self._perf(build, meta, done))

    def _perf(self, build: Build, meta: dict[str, Any], done: dict[str, Any]) -> Perf:
        extra = {
            key: meta.get(key)
            for key in (
                "precision",
                "input_precision",
                "input_precision_source",
                "io_type",
                "strategy",
                "reuse_factor",
                "backend",
                "softmax",
                "rewrites",
                "quantized",
            )
        }
        extra["build_seconds"] = meta.get("seconds")
        extra["csim_seconds"] = done.get("seconds")
        if build.mode != "hw_emu":
            return Perf(simulator=f"hls4ml {meta['hls4ml']} C simulation (g++), {meta['label']}", extra=extra)
        fields = json.loads((build.dir / PERF).read_text())
        extra.update(fields.pop("extra", {}))
        return Perf(
            simulator=f"hls4ml {meta['hls4ml']} {meta['hls_tool']} C/RTL co-simulation, {meta['label']}",
            extra=extra,
            **fields,
        )

    # ----- subprocesses ------------------------------------------------------------------

    @staticmethod
    def _call(
        argv: list[str], cwd: Path, log: Path, timeout: float, what: str, error_file: Path, refused: str = ""
    ) -> None:
        """Run the worker (pytest_tinyaccel.process: own process group, killed on timeout), its
        output to `log`; a failure is a TargetError with the worker's reason and the log's tail, a
        model hls4ml cannot convert a one-line TargetUnsupported starting with `refused`."""
        try:
            result = run_process(argv, cwd, dict(os.environ, PYTHONUNBUFFERED="1"), timeout, log, kill_grace=5.0)
        except StartError as exc:
            raise TargetError(f"{what}: cannot start the worker: {exc}") from None
        if result.ok:
            return
        tail = f"--- last lines of {log} ---\n" + ("\n".join(tail_text(log, LOG_TAIL_LINES)) or "(log is empty)")
        if result.timed_out:
            raise TargetError(
                f"{what} timed out after {timeout:g} s; its process group was killed "
                f"(raise build_timeout / run_timeout if this is expected)\n{tail}"
            )
        reason = None
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            error = json.loads(error_file.read_text())
            stage = error["stage"]
            if stage == UNSUPPORTED:  # one line, no log: what hls4ml cannot convert, by op type
                raise TargetUnsupported(f"{refused or what}: {error['message']}")
            reason = f"{stage} failed: {error['message']}"
        if reason is None:
            reason = (
                f"the worker was killed by signal {result.signal_name}"
                if result.signal_name
                else f"the worker exited with status {result.returncode}"
            )
        raise TargetError(f"{what}: {reason} (after {result.seconds:.1f} s)\n{tail}")


def _project_name(model_name: str) -> str:
    """A C identifier for the HLS project and top function."""
    name = re.sub(r"\W", "_", model_name)
    return f"{name}_hls" if name[:1].isalpha() else f"m_{name}_hls"
