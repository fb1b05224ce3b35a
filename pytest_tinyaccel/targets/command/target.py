"""`CommandTarget`: an external toolchain (Vitis AIE make flow, Gemmini's runner
under spike/qemu, KaNN ...) driven through the argv templates of its configuration.

Per mode it runs the `build` command once per cached build and the `run` command
per run (or per `batch` of samples), each through `pytest_tinyaccel.process` (own
process group, logs in the build or run folder, timeout), then reads the outputs
(files.py) and the perf figures (perf.py). In `hw` mode it also gives MLPerf
LoadGen a factory that runs the run command once per query.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...cache import file_sha256
from ...config import ConfigError
from ...modelfiles import copy_model
from ...perf import Perf
from ...process import ProcessResult, StartError, run_process
from ...runtime import input_specs, output_specs
from ..base import MODES, Build, RunResult, Target, TargetError
from .files import read_output, safe_name, write_inputs
from .perf import apply_perf, combine, values_per_instance
from .schema import KIND, ModeConfig, parse_config
from .templates import fill, try_fill

if TYPE_CHECKING:
    from ...models import Model

CODE_VERSION = "1"
MODEL_FILE = "model.onnx"


@dataclass
class Job:
    """What the commands of one build see (a Build without the Model object, so a
    LoadGen worker process can rebuild it from JSON)."""

    model_name: str
    dtype: str
    mode: str
    onnx_path: Path
    workdir: Path
    options: dict[str, Any] = field(default_factory=dict)


class CommandTarget(Target):
    """One external toolchain; see the module docstring and docs/command-target.md."""

    def __init__(self, name: str, table: Mapping[str, Any], root: Path | str = ".") -> None:
        self.config = parse_config(name, table)
        self.name = name  # type: ignore[misc]  # instances carry their own name and modes
        self.modes = tuple(m for m in MODES if m in self.config.modes)  # type: ignore[misc]
        self.version = f"command{CODE_VERSION}-{self.config.version}"  # type: ignore[misc]
        self.default_tolerance = self.config.tolerance  # type: ignore[misc]
        self.resource_columns = tuple(  # type: ignore[misc]  # the configured resources.<Name>
            dict.fromkeys(
                spec.field.split(".", 1)[1]
                for cfg in self.config.modes.values()
                for spec in cfg.perf
                if spec.field and spec.field.startswith("resources.")
            )
        )
        self.root = Path(root).resolve()
        self.settings = dict(table)  # the table as given: what a LoadGen worker rebuilds the target from

    def __repr__(self) -> str:
        return f"CommandTarget({self.name!r}, modes={self.modes})"

    # ----- availability and reporting --------------------------------------------------

    def availability(self, mode: str) -> str | None:
        cfg = self.config.modes.get(mode)
        if cfg is None:
            return f"{self.name}: mode {mode} is not configured"
        static = {"root": str(self.root), "python": sys.executable}
        env = self._env(cfg, static, partial=True)
        cwd = try_fill(cfg.cwd, static)
        exes = [argv[0] for argv in (cfg.build, cfg.run) if argv] + list(cfg.requires)
        for template in exes:
            exe = try_fill(template, static)
            if exe is None:
                continue  # depends on the build folder: checked when it runs
            if os.sep in exe:
                path = Path(exe) if os.path.isabs(exe) or cwd is None else Path(cwd) / exe
                if not (path.is_file() and os.access(path, os.X_OK)):
                    return f"{self.name} {mode}: `{exe}` not found or not executable"
            elif shutil.which(exe, path=env.get("PATH")) is None:
                return f"{self.name} {mode}: `{exe}` not found on PATH"
        return None

    def simulator(self, mode: str) -> str:
        cfg = self.config.modes.get(mode)
        if cfg and cfg.simulator:
            return cfg.simulator
        if cfg is None:
            return f"{self.name} {mode}"
        static = {"root": str(self.root), "python": sys.executable}
        words = [os.path.basename(try_fill(a, static) or a) for a in cfg.run[:2]]
        script = len(words) > 1 and words[0].startswith("python") and not words[1].startswith("-")
        exe = " ".join(words) if script else words[0]
        return f"{self.name} {mode} via `{exe}` (command target)"

    def cache_settings(self, model: Model, dtype: str, mode: str) -> dict[str, Any]:
        cfg = self.config.modes[mode]
        return {
            "build": cfg.build,
            "env": cfg.env,
            "cwd": cfg.cwd,
            "version": self.config.version,
            "options": model.target_options(self.name),
            "depends": self._depends_digest(),
        }

    def _depends_digest(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for pattern in self.config.depends:
            for path in sorted(self.root.glob(pattern)):
                if path.is_file():
                    found[str(path.relative_to(self.root))] = file_sha256(path)
        return found

    # ----- build and run ----------------------------------------------------------------

    def build(self, build: Build) -> None:
        job = self._job(build)
        copy_model(build.onnx_path, build.dir / MODEL_FILE)
        cfg = self.config.modes[build.mode]
        if not cfg.build:
            return
        values = self._values(job)
        argv = [fill(a, values, "build") for a in cfg.build]
        logs = build.dir / "logs"
        stdout, stderr = logs / "build.stdout.log", logs / "build.stderr.log"
        result = self._run(
            argv, Path(fill(cfg.cwd, values, "cwd")), self._env(cfg, values), cfg.build_timeout, stdout, stderr
        )
        kept = build.dir.with_name(build.dir.name + ".failed-build-logs")
        if not result.ok:
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(logs, kept)  # the cache wipes a failed build's folder
            result = replace(result, stdout=kept / stdout.name, stderr=kept / stderr.name)
            raise TargetError(self._describe(build.mode, "build command", result))
        shutil.rmtree(kept, ignore_errors=True)

    def run(self, build: Build, inputs: dict[str, np.ndarray]) -> RunResult:
        job = self._job(build)
        cfg = self.config.modes[build.mode]
        runs = build.dir / "runs"
        runs.mkdir(exist_ok=True)
        self._prune(runs)
        rundir = Path(tempfile.mkdtemp(prefix=time.strftime("run-%Y%m%d-%H%M%S-"), dir=runs))
        count = len(next(iter(inputs.values())))
        step = cfg.batch or count
        chunks = []
        for index in range(0, count, step):
            part = {k: v[index : index + step] for k, v in inputs.items()}
            where = rundir if step >= count else rundir / f"batch-{index:06d}"
            chunks.append(self.invoke(job, where, part, index))
        outputs = {name: np.concatenate([c[0][name] for c in chunks]) for name in chunks[0][0]}
        perf = combine([c[1] for c in chunks])
        perf.extra.setdefault("run_dir", str(rundir))
        return RunResult(outputs, perf)

    def invoke(
        self, job: Job, rundir: Path, inputs: dict[str, np.ndarray], index: int = 0
    ) -> tuple[dict[str, np.ndarray], Perf]:
        """Run the run command once on `inputs`, in `rundir`: write the input
        files, run, read the outputs and perf figures."""
        cfg = self.config.modes[job.mode]
        rundir.mkdir(parents=True, exist_ok=True)
        count = len(next(iter(inputs.values())))
        values = self._values(job, rundir=rundir, samples=count, index=index)
        values["outputs"] = fill(cfg.outputs.dir, values, "outputs.dir")
        Path(values["outputs"]).mkdir(parents=True, exist_ok=True)
        values["layers"] = fill(cfg.layers or "{rundir}/layers", values, "layers")
        in_paths = write_inputs(cfg.inputs, values, inputs)
        values["inputs"] = " ".join(str(p) for p in in_paths)
        out_specs = output_specs(job.onnx_path)
        out_paths = [
            Path(fill(cfg.outputs.path, {**values, "output": safe_name(s.name)}, "outputs.path")) for s in out_specs
        ]
        stdout, stderr = rundir / "run.stdout.log", rundir / "run.stderr.log"
        values.update(stdout=str(stdout), stderr=str(stderr))
        perf_files = [Path(fill(p.file, values, "perf.file")) for p in cfg.perf]
        fresh = [path for spec, path in zip(cfg.perf, perf_files, strict=True) if spec.fresh]
        for stale in set(out_paths + fresh) - {stdout, stderr}:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()  # never read what an earlier run left behind
        argv = []
        for arg in cfg.run:
            if arg == "{inputs}":
                argv += [str(p) for p in in_paths]
            else:
                argv.append(fill(arg, values, "run"))
        cwd = Path(fill(cfg.cwd, values, "cwd"))
        result = self._run(argv, cwd, self._env(cfg, values), cfg.timeout, stdout, stderr)
        if not result.ok:
            raise TargetError(self._describe(job.mode, "run command", result))
        outputs = {}
        for spec, path in zip(out_specs, out_paths, strict=True):
            try:
                outputs[spec.name] = read_output(path, cfg.outputs, spec, count)
            except (OSError, ValueError) as exc:
                raise TargetError(
                    self._describe(job.mode, "run command", result, f"output '{spec.name}': {exc}")
                ) from None
        perf = Perf(
            simulator=self.simulator(job.mode),
            clock_hz=cfg.clock_hz,
            extra={"wall_s": round(result.seconds, 3), "layers_dir": values["layers"]},
        )
        default_vpi = values_per_instance(out_specs[0], cfg.outputs)
        for perf_spec, path in zip(cfg.perf, perf_files, strict=True):
            try:
                apply_perf(perf, perf_spec, path, default_vpi)
            except (OSError, ValueError) as exc:
                raise TargetError(
                    self._describe(job.mode, "run command", result, f"perf ({perf_spec.parser}): {exc}")
                ) from None
        return outputs, perf

    def localize(
        self, build: Build, inputs: dict[str, np.ndarray], tolerance: dict[str, float], layers: dict[str, np.ndarray]
    ) -> str | None:
        """With `layers` configured: rerun the flow on the per-kernel golden samples and
        compare each <tensor>.npy it writes with the per-kernel golden, in graph order."""
        import onnx

        from ...emulator import first_divergence

        cfg = self.config.modes[build.mode]
        if not cfg.layers or not layers:
            return None
        job = self._job(build)
        count = build.model.layer_samples
        rundir = Path(tempfile.mkdtemp(prefix="localize-", dir=build.dir / "runs"))
        _, perf = self.invoke(job, rundir, {k: v[:count] for k, v in inputs.items()})
        folder = Path(perf.extra["layers_dir"])
        ours = {}
        for name, reference in layers.items():
            path = folder / f"{safe_name(name)}.npy"
            if path.is_file():
                value = np.load(path, allow_pickle=False)
                ours[name] = value.reshape(reference.shape) if value.size == reference.size else value
        if not ours:
            return f"per-kernel comparison: the flow wrote no <tensor>.npy into {folder}"
        graph = onnx.load(str(job.onnx_path), load_external_data=False).graph
        order = [(n.name or n.output[0], n.op_type, list(n.output)) for n in graph.node]
        found = first_divergence(ours, layers, order, tolerance["atol"], tolerance["rtol"])
        if found is None:
            return (
                f"per-kernel comparison: the {len(ours)} kernel outputs the flow wrote all match the per-kernel golden"
            )
        return found.describe() + f" (per-kernel outputs in {folder})"

    def deterministic(self, mode: str) -> bool:
        """Results are kept only with `cache_results = true` (and never for `hw`)."""
        return self.config.cache_results and mode != "hw"

    def loadgen_factory(self, build: Build) -> tuple[str, dict[str, Any]] | None:
        """The SUT factory for pytest_tinyaccel.loadgen: only `hw` runs in real time."""
        if build.mode != "hw":
            return None
        job = self._job(build)
        return f"{__name__}:loadgen_infer", {
            "name": self.name,
            "table": self.settings,
            "root": str(self.root),
            "mode": build.mode,
            "dtype": build.dtype,
            "model_name": job.model_name,
            "onnx_path": str(job.onnx_path),
            "build_dir": str(build.dir),
            "options": {k: v for k, v in job.options.items() if isinstance(v, (str, int, float, bool))},
        }

    # ----- helpers ----------------------------------------------------------------------

    def _job(self, build: Build) -> Job:
        return Job(
            build.model.name,
            build.dtype,
            build.mode,
            build.dir / MODEL_FILE,
            build.dir,
            dict(build.model.target_options(self.name)),
        )

    def _values(
        self, job: Job, rundir: Path | None = None, samples: int | None = None, index: int = 0
    ) -> dict[str, str]:
        """The placeholders' values: the manifest's options, then the built-in names."""
        values = {str(k): str(v) for k, v in job.options.items()}
        values.update(
            model=str(job.onnx_path),
            workdir=str(job.workdir),
            mode=job.mode,
            dtype=job.dtype,
            name=job.model_name,
            target=self.name,
            root=str(self.root),
            python=sys.executable,
        )
        if rundir is not None:
            values.update(rundir=str(rundir), samples=str(samples), index=str(index))
        return values

    @staticmethod
    def _env(cfg: ModeConfig, values: dict[str, str], partial: bool = False) -> dict[str, str]:
        env = dict(os.environ)
        for key, template in cfg.env.items():
            value = try_fill(template, values) if partial else fill(template, values, f"env.{key}")
            if value is not None:
                env[key] = value
        return env

    def _run(
        self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float, stdout: Path, stderr: Path
    ) -> ProcessResult:
        try:
            return run_process(argv, cwd, env, timeout, stdout, stderr, self.config.kill_grace)
        except StartError as exc:
            raise TargetError(str(exc)) from None

    def _prune(self, runs: Path) -> None:
        old = sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for path in old[: max(0, len(old) - self.config.keep_runs + 1)]:
            shutil.rmtree(path, ignore_errors=True)

    def _describe(self, mode: str, what: str, result: ProcessResult, problem: str | None = None) -> str:
        head = (
            f"{self.name} {mode}: {what} {result.status()}"
            if problem is None
            else f"{self.name} {mode}: {what} succeeded but {problem}"
        )
        return "\n".join(
            [
                head,
                f"  command: {shlex.join(result.argv)}",
                f"  cwd: {result.cwd}",
                f"  logs: {result.stdout} {result.stderr}",
                result.tails(),
            ]
        )


def loadgen_infer(
    name: str,
    table: dict[str, Any],
    root: str,
    mode: str,
    dtype: str,
    model_name: str,
    onnx_path: str,
    build_dir: str,
    options: dict[str, Any] | None = None,
) -> Callable[[np.ndarray], Any]:
    """LoadGen SUT factory: each query batch runs the run command once."""
    target = CommandTarget(name, table, root)
    job = Job(model_name, dtype, mode, Path(onnx_path), Path(build_dir), dict(options or {}))
    (spec,) = input_specs(job.onnx_path)
    runs = Path(build_dir) / "runs"
    runs.mkdir(exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="loadgen-", dir=runs))
    counter = iter(range(1 << 62))

    def infer(batch: np.ndarray) -> dict[str, np.ndarray]:
        where = base / f"query-{next(counter):08d}"
        outputs, _ = target.invoke(job, where, {spec.name: batch})
        shutil.rmtree(where, ignore_errors=True)  # keep the folder only when a query fails
        return outputs

    return infer


def configured_command_targets(settings: Mapping[str, Any], root: Path) -> tuple[list[CommandTarget], dict[str, Any]]:
    """Split `[tool.tinyaccel.targets]`: tables with `kind = "command"` become
    CommandTarget instances named after their table; the rest is returned as the
    settings of registered target classes. A `kind` other than "command" is a ConfigError."""
    targets, rest = [], {}
    for name, table in settings.items():
        if isinstance(table, dict) and "kind" in table:
            if table["kind"] != KIND:
                raise ConfigError(
                    f"[tool.tinyaccel.targets.{name}]", "kind", f"only {KIND!r} is known, got {table['kind']!r}"
                )
            targets.append(CommandTarget(name, table, root))
        else:
            rest[name] = table
    return targets, rest
