"""`command`: drive an external toolchain (Vitis AIE make flow, Gemmini's runner
under spike/qemu, KaNN ...) through argv templates configured in pyproject.toml.

Every `[tool.tinyaccel.targets.<name>]` table with `kind = "command"` becomes one
`CommandTarget` named `<name>` (its pytest marker and test-id part). Per mode it
runs a `build` command once per cached build and a `run` command per run, then
reads the outputs (.npy files, or AIE-style text files) and the perf figures
(named parsers from `pytest_tinyaccel.parsers`, or regexes over the tool's logs).
docs/command-target.md documents the schema with worked configurations.

Processes: argv lists (never a shell), stdin closed, stdout/stderr to files in
the run (or build) folder, their own session/process group; on timeout the
whole group is terminated (then killed), and stragglers left behind by a
command that exited are killed as well.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import parsers
from ..runtime import TensorSpec, input_specs, output_specs
from .base import (
    MODES,
    Build,
    LayerPerf,
    Perf,
    RunResult,
    Target,
    TargetError,
)

KIND = "command"
CODE_VERSION = "1"
MODEL_FILE = "model.onnx"
TAIL_LINES = 15

COMMON_PLACEHOLDERS = ("model", "workdir", "mode", "dtype", "name", "target", "root", "python")
RUN_PLACEHOLDERS = COMMON_PLACEHOLDERS + ("rundir", "inputs", "outputs", "samples", "index", "layers")
PERF_PLACEHOLDERS = RUN_PLACEHOLDERS + ("stdout", "stderr")
PARSERS = ("aiesim_stream", "aie_kernel_cycles", "ort_profile", "cycles", "regex")
SCALAR_FIELDS = ("cycles", "latency_ns", "throughput", "clock_hz", "efficiency")

_TOP_KEYS = {"kind", "modes", "description", "version", "depends", "keep_runs", "tolerance", "kill_grace"}
_MODE_KEYS = {"build", "run", "timeout", "build_timeout", "env", "cwd", "requires", "batch", "inputs",
              "outputs", "perf", "clock_hz", "simulator", "layers"}
_IO_KEYS = {"format", "path", "dir", "values_per_line", "pad", "pad_value", "fmt"}
_PERF_KEYS = {"parser", "file", "field", "regex", "reduce", "scale", "required", "values_per_instance", "start_ns",
              "fresh"}


# ----- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class IOConfig:
    format: str
    path: str
    values_per_line: int
    pad: int | None
    pad_value: float
    fmt: str | None
    dir: str = "{rundir}/outputs"


@dataclass(frozen=True)
class PerfSpec:
    parser: str
    file: str
    field: str | None
    regex: str | None
    reduce: str
    scale: float
    required: bool
    values_per_instance: int | None
    start_ns: float
    fresh: bool = False
    """Remove the file before each run (a log the flow appends to, a report in a fixed place)."""


@dataclass(frozen=True)
class ModeConfig:
    mode: str
    build: tuple[str, ...] | None
    run: tuple[str, ...]
    timeout: float
    build_timeout: float
    env: dict[str, str]
    cwd: str
    requires: tuple[str, ...]
    batch: int
    inputs: IOConfig
    outputs: IOConfig
    perf: tuple[PerfSpec, ...]
    clock_hz: float | None
    simulator: str | None
    layers: str | None = None
    """Folder (template) where the flow writes per-kernel outputs, one <tensor>.npy each."""


@dataclass(frozen=True)
class CommandConfig:
    name: str
    modes: dict[str, ModeConfig]
    description: str
    version: str
    depends: tuple[str, ...]
    keep_runs: int
    kill_grace: float
    tolerance: dict[str, dict[str, float]]


class ConfigError(TargetError):
    pass


def parse_config(name: str, table: dict[str, Any]) -> CommandConfig:
    """Validate one `[tool.tinyaccel.targets.<name>]` table (kind = "command")."""
    where = f"[tool.tinyaccel.targets.{name}]"

    def fail(key: str, problem: str, mode: str | None = None) -> ConfigError:
        table_name = f"[tool.tinyaccel.targets.{name}.{mode}]" if mode else where
        return ConfigError(f"{table_name} {key}: {problem}")

    if not name.isidentifier():
        raise ConfigError(f"{where}: a command target's name must be an identifier (letters, digits, _), got {name!r}")
    unknown = set(table) - _TOP_KEYS - _MODE_KEYS - set(MODES)
    if unknown:
        raise fail(", ".join(sorted(unknown)), f"unknown key(s); known: {', '.join(sorted(_TOP_KEYS | _MODE_KEYS | set(MODES)))}")
    mode_tables = {m: table[m] for m in MODES if m in table}
    for m, sub in mode_tables.items():
        if not isinstance(sub, dict):
            raise fail(m, "must be a table of that mode's settings")
        bad = set(sub) - _MODE_KEYS
        if bad:
            raise fail(", ".join(sorted(bad)), f"unknown key(s) in a mode table; known: {', '.join(sorted(_MODE_KEYS))}", m)
    modes = table.get("modes")
    if modes is None:
        modes = [m for m in MODES if m in mode_tables]
    if not isinstance(modes, list) or not modes or any(m not in MODES for m in modes):
        raise fail("modes", f"must be a non-empty list drawn from {list(MODES)} (or give one table per mode), got {modes!r}")
    extra = set(mode_tables) - set(modes)
    if extra:
        raise fail("modes", f"lists {modes} but tables exist for {sorted(extra)}")

    parsed = {}
    for mode in modes:
        merged = {k: v for k, v in table.items() if k in _MODE_KEYS}
        merged.update(mode_tables.get(mode, {}))
        requires = [table.get("requires", []), mode_tables.get(mode, {}).get("requires", [])]
        if all(isinstance(r, list) for r in requires):
            merged["requires"] = list(dict.fromkeys(requires[0] + requires[1]))  # joined, not replaced
        env = {**_check_env(table.get("env", {}), lambda p: fail("env", p)),
               **_check_env(mode_tables.get(mode, {}).get("env", {}), lambda p: fail("env", p, mode))}
        parsed[mode] = _parse_mode(mode, merged, env, lambda k, p, m=mode: fail(k, p, m))

    version = table.get("version", "1")
    depends = table.get("depends", [])
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        raise fail("depends", "must be a list of glob patterns relative to the project root")
    keep_runs = _positive_int(table.get("keep_runs", 5), lambda p: fail("keep_runs", p))
    kill_grace = _positive_number(table.get("kill_grace", 3.0), lambda p: fail("kill_grace", p))
    tolerance = table.get("tolerance", {})
    if not isinstance(tolerance, dict) or not all(
            isinstance(v, dict) and set(v) <= {"atol", "rtol"} and all(isinstance(x, (int, float)) for x in v.values())
            for v in tolerance.values()):
        raise fail("tolerance", 'must map dtypes to {atol = .., rtol = ..}, e.g. tolerance.int8 = { atol = 1e-2 }')
    return CommandConfig(name=name, modes=parsed, description=str(table.get("description", "")),
                         version=str(version), depends=tuple(depends), keep_runs=keep_runs,
                         kill_grace=kill_grace, tolerance={k: {a: float(b) for a, b in v.items()} for k, v in tolerance.items()})


def _parse_mode(mode: str, t: dict[str, Any], env: dict[str, str], fail: Callable[[str, str], ConfigError]) -> ModeConfig:
    if "run" not in t:
        raise fail("run", "missing: the command (argv list) that runs the inputs through the build")
    run = _argv(t["run"], RUN_PLACEHOLDERS, lambda p: fail("run", p))
    build = _argv(t["build"], COMMON_PLACEHOLDERS, lambda p: fail("build", p)) if "build" in t else None
    timeout = _positive_number(t.get("timeout", 600), lambda p: fail("timeout", p))
    build_timeout = _positive_number(t.get("build_timeout", timeout), lambda p: fail("build_timeout", p))
    for key, value in env.items():
        _template(value, COMMON_PLACEHOLDERS, lambda p, k=key: fail(f"env.{k}", p))
    cwd = t.get("cwd", "{root}")
    if not isinstance(cwd, str):
        raise fail("cwd", "must be a string (a folder; placeholders allowed)")
    _template(cwd, COMMON_PLACEHOLDERS, lambda p: fail("cwd", p))
    requires = t.get("requires", [])
    if not isinstance(requires, list) or not all(isinstance(r, str) and r for r in requires):
        raise fail("requires", "must be a list of executable names that must be on PATH")
    batch = t.get("batch", 0)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise fail("batch", f"must be an integer >= 0 (samples per run command; 0 = all at once), got {batch!r}")
    inputs = _io(t.get("inputs", {}), "inputs", lambda k, p: fail(f"inputs.{k}", p))
    outputs = _io(t.get("outputs", {}), "outputs", lambda k, p: fail(f"outputs.{k}", p))
    perf_entries = t.get("perf", [])
    if isinstance(perf_entries, dict):
        perf_entries = [perf_entries]
    if not isinstance(perf_entries, list):
        raise fail("perf", "must be a list of tables ([[...perf]])")
    perf = tuple(_perf(p, lambda k, msg, i=i: fail(f"perf[{i}].{k}", msg)) for i, p in enumerate(perf_entries))
    clock_hz = t.get("clock_hz")
    if clock_hz is not None:
        clock_hz = _positive_number(clock_hz, lambda p: fail("clock_hz", p))
    simulator = t.get("simulator")
    if simulator is not None and not isinstance(simulator, str):
        raise fail("simulator", "must be a string (shown in the report)")
    layers = t.get("layers")
    if layers is not None:
        if not isinstance(layers, str):
            raise fail("layers", "must be a folder (string; placeholders allowed) for per-kernel .npy outputs")
        _template(layers, RUN_PLACEHOLDERS, lambda p: fail("layers", p))
    return ModeConfig(mode=mode, build=build, run=run, timeout=timeout, build_timeout=build_timeout, env=env,
                      cwd=cwd, requires=tuple(requires), batch=batch, inputs=inputs, outputs=outputs, perf=perf,
                      clock_hz=clock_hz, simulator=simulator, layers=layers)


def _io(t: Any, kind: str, fail: Callable[[str, str], ConfigError]) -> IOConfig:
    if not isinstance(t, dict):
        raise fail("", "must be a table")
    known = _IO_KEYS if kind == "outputs" else _IO_KEYS - {"dir"}
    bad = set(t) - known
    if bad:
        raise fail(",".join(sorted(bad)), f"unknown key(s); known: {', '.join(sorted(known))}")
    fmt_name = t.get("format", "npy")
    if fmt_name not in ("npy", "txt"):
        raise fail("format", f"must be 'npy' or 'txt', got {fmt_name!r}")
    tensor = "input" if kind == "inputs" else "output"
    default = f"{{rundir}}/inputs/{{input}}.{fmt_name}" if kind == "inputs" else f"{{outputs}}/{{output}}.{fmt_name}"
    path = t.get("path", default)
    allowed = COMMON_PLACEHOLDERS + ("rundir", "samples", "index", tensor) + (("outputs",) if kind == "outputs" else ())
    _template(path, allowed, lambda p: fail("path", p))
    directory = t.get("dir", "{rundir}/outputs")
    _template(directory, COMMON_PLACEHOLDERS + ("rundir", "samples", "index"), lambda p: fail("dir", p))
    vpl = _positive_int(t.get("values_per_line", 1), lambda p: fail("values_per_line", p))
    pad = t.get("pad", "none")
    if pad == "line":
        pad_n: int | None = vpl
    elif pad == "none" or pad == 0:
        pad_n = None
    elif isinstance(pad, int) and not isinstance(pad, bool) and pad > 0:
        pad_n = pad
    else:
        raise fail("pad", f"must be 'line' (pad the last dimension to a multiple of values_per_line), 'none', or a positive integer, got {pad!r}")
    pad_value = t.get("pad_value", 0)
    if isinstance(pad_value, bool) or not isinstance(pad_value, (int, float)):
        raise fail("pad_value", "must be a number")
    text_fmt = t.get("fmt")
    if text_fmt is not None:
        try:
            text_fmt % 1.5
        except (TypeError, ValueError):
            raise fail("fmt", f"must be a printf-style format for one number such as '%.9g', got {text_fmt!r}") from None
    return IOConfig(format=fmt_name, path=path, values_per_line=vpl, pad=pad_n, pad_value=float(pad_value),
                    fmt=text_fmt, dir=directory)


def _perf(t: Any, fail: Callable[[str, str], ConfigError]) -> PerfSpec:
    if not isinstance(t, dict):
        raise fail("", "must be a table")
    bad = set(t) - _PERF_KEYS
    if bad:
        raise fail(",".join(sorted(bad)), f"unknown key(s); known: {sorted(_PERF_KEYS)}")
    parser = t.get("parser", "regex" if "regex" in t else None)
    if parser not in PARSERS:
        raise fail("parser", f"must be one of {', '.join(PARSERS)} (or give `regex`), got {parser!r}")
    regex = t.get("regex")
    if parser == "regex":
        if not isinstance(regex, str):
            raise fail("regex", "missing: a regular expression whose group 1 (or group `value`) is the number")
        try:
            re.compile(regex)
        except re.error as exc:
            raise fail("regex", f"invalid regular expression: {exc}") from None
    elif regex is not None:
        raise fail("regex", f"only for parser 'regex', not {parser!r}")
    fld = t.get("field")
    if parser in ("regex", "cycles"):
        fld = fld or ("cycles" if parser == "cycles" else None)
        if not isinstance(fld, str) or not (fld in SCALAR_FIELDS or re.fullmatch(r"(resources|extra)\.\w+", fld)):
            raise fail("field", f"must be one of {', '.join(SCALAR_FIELDS)}, resources.<Name> or extra.<name>, got {fld!r}")
    elif fld is not None:
        raise fail("field", f"parser {parser!r} sets its own fields")
    file = t.get("file", "{stdout}")
    _template(file, PERF_PLACEHOLDERS, lambda p: fail("file", p))
    reduce = t.get("reduce", "last")
    if reduce not in parsers.REDUCERS:
        raise fail("reduce", f"must be one of {', '.join(parsers.REDUCERS)}")
    scale = t.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise fail("scale", "must be a number")
    required = t.get("required", True)
    if not isinstance(required, bool):
        raise fail("required", "must be true or false")
    fresh = t.get("fresh", False)
    if not isinstance(fresh, bool):
        raise fail("fresh", "must be true or false")
    vpi = t.get("values_per_instance")
    if vpi is not None:
        vpi = _positive_int(vpi, lambda p: fail("values_per_instance", p))
    start_ns = t.get("start_ns", 0.0)
    if isinstance(start_ns, bool) or not isinstance(start_ns, (int, float)):
        raise fail("start_ns", "must be a number")
    return PerfSpec(parser=parser, file=file, field=fld, regex=regex, reduce=reduce, scale=float(scale),
                    required=required, values_per_instance=vpi, start_ns=float(start_ns), fresh=fresh)


def _argv(value: Any, allowed: tuple[str, ...], fail: Callable[[str], ConfigError]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise fail(f"must be an argv list such as [\"make\", \"aiesim\"], not a shell string ({value!r})")
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise fail("must be a non-empty list of strings (argv)")
    for arg in value:
        _template(arg, allowed, fail)
    return tuple(value)


def _template(text: Any, allowed: tuple[str, ...], fail: Callable[[str], ConfigError]) -> None:
    """Placeholders must be plain names: built-in ones, or keys of the model's
    [targets.<name>] manifest table (checked when a model runs)."""
    if not isinstance(text, str):
        raise fail(f"must be a string, got {text!r}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise fail(f"bad placeholder syntax in {text!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
    for name in fields:
        if not name.isidentifier():
            raise fail(f"placeholder {{{name}}} in {text!r} must be a plain name; built-in: {', '.join(allowed)}")
        if name in PERF_PLACEHOLDERS + ("input", "output") and name not in allowed:
            raise fail(f"placeholder {{{name}}} is not available here; available: {', '.join(allowed)}")


def _check_env(env: Any, fail: Callable[[str], ConfigError]) -> dict[str, str]:
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in env.items()):
        raise fail("must be a table of NAME = \"value\"")
    return {k: str(v) for k, v in env.items()}


def _positive_int(value: Any, fail: Callable[[str], ConfigError]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise fail(f"must be a positive integer, got {value!r}")
    return value


def _positive_number(value: Any, fail: Callable[[str], ConfigError]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise fail(f"must be a positive number, got {value!r}")
    return float(value)


def configured_command_targets(settings: dict[str, Any], root: Path) -> tuple[list[CommandTarget], dict[str, Any]]:
    """Split `[tool.tinyaccel.targets]`: tables with `kind = "command"` become
    CommandTarget instances named after their table; the rest is returned as the
    settings of registered target classes. A `kind` other than "command" is an error."""
    targets, rest = [], {}
    for name, table in settings.items():
        if isinstance(table, dict) and "kind" in table:
            if table["kind"] != KIND:
                raise ConfigError(f"[tool.tinyaccel.targets.{name}] kind: only {KIND!r} is known, got {table['kind']!r}")
            targets.append(CommandTarget(name, table, root))
        else:
            rest[name] = table
    return targets, rest


# ----- processes -----------------------------------------------------------------------------


@dataclass
class ProcessResult:
    argv: list[str]
    cwd: Path
    returncode: int | None
    timed_out: bool
    seconds: float
    stdout: Path
    stderr: Path
    timeout: float

    @property
    def ok(self) -> bool:
        return not self.timed_out and self.returncode == 0

    def status(self) -> str:
        if self.timed_out:
            return f"timed out after {self.timeout:g} s (its process group was killed)"
        code = self.returncode
        if code is not None and code < 0:
            try:
                sig = signal.Signals(-code).name
            except ValueError:
                sig = f"signal {-code}"
            return f"was killed by {sig} (exit code {code})"
        return f"exited with code {code}"

    def tails(self, lines: int = TAIL_LINES) -> str:
        parts = []
        for label, path in (("stderr", self.stderr), ("stdout", self.stdout)):
            tail = tail_text(path, lines)
            if tail:
                parts.append(f"  last lines of {label} ({path}):\n" + "\n".join(f"    | {line}" for line in tail))
        return "\n".join(parts) if parts else "  (no output on stdout or stderr)"


def tail_text(path: Path, lines: int = TAIL_LINES, width: int = 300) -> list[str]:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    out = [line if len(line) <= width else line[: width - 3] + "..." for line in data.splitlines()[-lines:]]
    return out if any(line.strip() for line in out) else []


def _kill_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def run_process(argv: list[str], cwd: Path, env: dict[str, str] | None, timeout: float,
                stdout: Path, stderr: Path, kill_grace: float = 3.0) -> ProcessResult:
    """Run argv in its own session with stdout/stderr to files. On timeout (or
    an interrupt) the whole process group gets SIGTERM, then SIGKILL after
    `kill_grace` s; after a normal exit, leftovers in the group are killed."""
    stdout.parent.mkdir(parents=True, exist_ok=True)
    stderr.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)
        except OSError as exc:
            raise TargetError(f"cannot start {shlex.join(argv)} in {cwd}: {exc}") from exc
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _terminate(proc, kill_grace)
        except BaseException:
            _terminate(proc, kill_grace)
            raise
        finally:
            _kill_group(proc.pid, signal.SIGKILL)
    return ProcessResult(list(argv), cwd, proc.returncode, timed_out, time.monotonic() - start, stdout, stderr, timeout)


def _terminate(proc: subprocess.Popen, grace: float) -> None:
    _kill_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


# ----- the target ----------------------------------------------------------------------------


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

    def __init__(self, name: str, table: dict[str, Any], root: Path | str = ".") -> None:
        self.config = parse_config(name, table)
        self.name = name  # type: ignore[misc]  # instances carry their own name and modes
        self.modes = tuple(m for m in MODES if m in self.config.modes)  # type: ignore[misc]
        self.version = f"command{CODE_VERSION}-{self.config.version}"  # type: ignore[misc]
        self.description = self.config.description or "external toolchain via the command target"  # type: ignore[misc]
        self.default_tolerance = self.config.tolerance  # type: ignore[misc]
        self.root = Path(root).resolve()
        self.table = table
        self.settings = table

    def __repr__(self) -> str:
        return f"CommandTarget({self.name!r}, modes={self.modes})"

    # ----- availability and reporting --------------------------------------------------

    def availability(self, mode: str) -> str | None:
        cfg = self.config.modes.get(mode)
        if cfg is None:
            return f"{self.name}: mode {mode} is not configured"
        static = {"root": str(self.root), "python": sys.executable}
        env = self._env(cfg, static, partial=True)
        cwd = _try_format(cfg.cwd, static)
        exes = [argv[0] for argv in (cfg.build, cfg.run) if argv] + list(cfg.requires)
        for template in exes:
            exe = _try_format(template, static)
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
        words = [os.path.basename(_try_format(a, static) or a) for a in cfg.run[:2]]
        script = len(words) > 1 and words[0].startswith("python") and not words[1].startswith("-")
        exe = " ".join(words) if script else words[0]
        return f"{self.name} {mode} via `{exe}` (command target)"

    def cache_settings(self, model, dtype: str, mode: str) -> dict[str, Any]:
        cfg = self.config.modes[mode]
        return {"build": cfg.build, "env": cfg.env, "cwd": cfg.cwd, "version": self.config.version,
                "options": model.target_options(self.name), "depends": self._depends_digest()}

    def _depends_digest(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for pattern in self.config.depends:
            for path in sorted(self.root.glob(pattern)):
                if path.is_file():
                    found[str(path.relative_to(self.root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        return found

    # ----- build ------------------------------------------------------------------------

    def build(self, build: Build) -> None:
        job = self._job(build)
        shutil.copyfile(build.onnx_path, build.dir / MODEL_FILE)
        cfg = self.config.modes[build.mode]
        if not cfg.build:
            return
        values = self._values(job, cfg)
        argv = [_format(a, values, "build") for a in cfg.build]
        cwd = Path(_format(cfg.cwd, values, "cwd"))
        logs = build.dir / "logs"
        result = run_process(argv, cwd, self._env(cfg, values), cfg.build_timeout, logs / "build.stdout.log",
                             logs / "build.stderr.log", self.config.kill_grace)
        kept = build.dir.with_name(build.dir.name + ".failed-build-logs")
        if not result.ok:
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(logs, kept)  # the cache wipes a failed build's folder
            result = replace(result, stdout=kept / result.stdout.name, stderr=kept / result.stderr.name)
            raise TargetError(self._describe(build.mode, "build command", result))
        shutil.rmtree(kept, ignore_errors=True)

    # ----- run --------------------------------------------------------------------------

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
        perf = _combine([c[1] for c in chunks])
        perf.extra.setdefault("run_dir", str(rundir))
        return RunResult(outputs, perf)

    def invoke(self, job: Job, rundir: Path, inputs: dict[str, np.ndarray], index: int = 0) -> tuple[dict[str, np.ndarray], Perf]:
        """Run the run command once on `inputs`, in `rundir`: write the input
        files, run, read the outputs and perf figures."""
        cfg = self.config.modes[job.mode]
        rundir.mkdir(parents=True, exist_ok=True)
        count = len(next(iter(inputs.values())))
        values = self._values(job, cfg, rundir=rundir, samples=count, index=index)
        values["outputs"] = _format(cfg.outputs.dir, values, "outputs.dir")
        Path(values["outputs"]).mkdir(parents=True, exist_ok=True)
        values["layers"] = _format(cfg.layers or "{rundir}/layers", values, "layers")
        in_paths = self._write_inputs(cfg.inputs, values, inputs)
        values["inputs"] = " ".join(str(p) for p in in_paths)
        out_specs = output_specs(job.onnx_path)
        out_paths = [Path(_format(cfg.outputs.path, {**values, "output": _safe(s.name)}, "outputs.path"))
                     for s in out_specs]
        stdout, stderr = rundir / "run.stdout.log", rundir / "run.stderr.log"
        values.update(stdout=str(stdout), stderr=str(stderr))
        perf_files = [Path(_format(p.file, values, "perf.file")) for p in cfg.perf]
        fresh = [path for spec, path in zip(cfg.perf, perf_files) if spec.fresh]
        for stale in set(out_paths + fresh) - {stdout, stderr}:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()  # never read what an earlier run left behind
        argv = []
        for arg in cfg.run:
            if arg == "{inputs}":
                argv += [str(p) for p in in_paths]
            else:
                argv.append(_format(arg, values, "run"))
        cwd = Path(_format(cfg.cwd, values, "cwd"))
        result = run_process(argv, cwd, self._env(cfg, values), cfg.timeout, stdout, stderr, self.config.kill_grace)
        if not result.ok:
            raise TargetError(self._describe(job.mode, "run command", result))
        outputs = {}
        for spec, path in zip(out_specs, out_paths):
            try:
                outputs[spec.name] = read_output(path, cfg.outputs, spec, count)
            except (OSError, ValueError) as exc:
                raise TargetError(self._describe(job.mode, "run command", result,
                                                 f"output '{spec.name}': {exc}")) from None
        perf = Perf(simulator=self.simulator(job.mode), clock_hz=cfg.clock_hz,
                    extra={"wall_s": round(result.seconds, 3), "layers_dir": values["layers"]})
        default_vpi = _values_per_instance(out_specs[0], cfg.outputs)
        for spec, path in zip(cfg.perf, perf_files):
            try:
                apply_perf(perf, spec, path, default_vpi)
            except (OSError, ValueError) as exc:
                raise TargetError(self._describe(job.mode, "run command", result, f"perf ({spec.parser}): {exc}")) from None
        return outputs, perf

    def localize(self, build: Build, inputs: dict[str, np.ndarray], tolerance: dict[str, float],
                 layers: dict[str, np.ndarray]) -> str | None:
        """With `layers` configured: rerun the flow on the per-kernel golden samples and
        compare each <tensor>.npy it writes with the per-kernel golden, in graph order."""
        import onnx

        from ..emulator import first_divergence

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
            path = folder / f"{_safe(name)}.npy"
            if path.is_file():
                value = np.load(path, allow_pickle=False)
                ours[name] = value.reshape(reference.shape) if value.size == reference.size else value
        if not ours:
            return f"per-kernel comparison: the flow wrote no <tensor>.npy into {folder}"
        graph = onnx.load(str(job.onnx_path), load_external_data=False).graph
        order = [(n.name or n.output[0], n.op_type, list(n.output)) for n in graph.node]
        found = first_divergence(ours, layers, order, tolerance["atol"], tolerance["rtol"])
        if found is None:
            return f"per-kernel comparison: the {len(ours)} kernel outputs the flow wrote all match the per-kernel golden"
        return found.describe() + f" (per-kernel outputs in {folder})"

    # ----- helpers ----------------------------------------------------------------------

    def _job(self, build: Build) -> Job:
        return Job(build.model.name, build.dtype, build.mode, build.dir / MODEL_FILE, build.dir,
                   dict(build.model.target_options(self.name)))

    def _values(self, job: Job, cfg: ModeConfig, rundir: Path | None = None, samples: int | None = None,
                index: int = 0) -> dict[str, str]:
        values = {str(k): str(v) for k, v in job.options.items() if k not in ("skip", "max_regression")}
        values.update(model=str(job.onnx_path), workdir=str(job.workdir), mode=job.mode, dtype=job.dtype,
                      name=job.model_name, target=self.name, root=str(self.root), python=sys.executable)
        if rundir is not None:
            values.update(rundir=str(rundir), samples=str(samples), index=str(index))
        return values

    def _env(self, cfg: ModeConfig, values: dict[str, str], partial: bool = False) -> dict[str, str]:
        env = dict(os.environ)
        for key, template in cfg.env.items():
            value = _try_format(template, values) if partial else _format(template, values, f"env.{key}")
            if value is not None:
                env[key] = value
        return env

    def _write_inputs(self, io: IOConfig, values: dict[str, str], inputs: dict[str, np.ndarray]) -> list[Path]:
        paths = []
        for name, x in inputs.items():
            path = Path(_format(io.path, {**values, "input": _safe(name)}, "inputs.path"))
            path.parent.mkdir(parents=True, exist_ok=True)
            if io.format == "npy":
                np.save(path, np.ascontiguousarray(x), allow_pickle=False)
            else:
                path.write_text(parsers.array_to_text(x, io.values_per_line, io.pad, io.pad_value, io.fmt))
            paths.append(path)
        return paths

    def _prune(self, runs: Path) -> None:
        old = sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for path in old[: max(0, len(old) - self.config.keep_runs + 1)]:
            shutil.rmtree(path, ignore_errors=True)

    def _describe(self, mode: str, what: str, result: ProcessResult, problem: str | None = None) -> str:
        head = (f"{self.name} {mode}: {what} {result.status()}" if problem is None
                else f"{self.name} {mode}: {what} succeeded but {problem}")
        return "\n".join([head, f"  command: {shlex.join(result.argv)}", f"  cwd: {result.cwd}",
                          f"  logs: {result.stdout} {result.stderr}", result.tails()])

    # ----- MLPerf LoadGen ------------------------------------------------------------------

    def loadgen_factory(self, build: Build) -> tuple[str, dict[str, Any]] | None:
        """The SUT factory for pytest_tinyaccel.loadgen: only `hw` runs in real time."""
        if build.mode != "hw":
            return None
        job = self._job(build)
        return f"{__name__}:loadgen_infer", {
            "name": self.name, "table": self.table, "root": str(self.root), "mode": build.mode,
            "dtype": build.dtype, "model_name": job.model_name, "onnx_path": str(job.onnx_path),
            "build_dir": str(build.dir), "options": {k: v for k, v in job.options.items() if _jsonable(v)}}


def loadgen_infer(name: str, table: dict[str, Any], root: str, mode: str, dtype: str, model_name: str,
                  onnx_path: str, build_dir: str, options: dict[str, Any] | None = None) -> Callable[[np.ndarray], Any]:
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


# ----- outputs and perf ---------------------------------------------------------------------


def read_output(path: Path, io: IOConfig, spec: TensorSpec, count: int) -> np.ndarray:
    """Read one output tensor for `count` samples as [count, *sample shape] in
    the model's output dtype. Raises ValueError (malformed) or OSError (missing)."""
    if not path.is_file():
        raise FileNotFoundError(f"the output file {path} was not written")
    sample_shape = tuple(spec.shape[1:])
    if io.format == "npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{path} is not a readable .npy array ({exc})") from None
        if any(d is None for d in sample_shape):
            if array.ndim < 1 or array.shape[0] != count:
                raise ValueError(f"{path} has shape {list(array.shape)}; expected {count} samples on the first axis")
        elif array.shape != (count, *sample_shape):
            expected = count * int(np.prod(sample_shape, dtype=np.int64))
            if array.size != expected:
                raise ValueError(f"{path} holds {array.size} values (shape {list(array.shape)}); expected "
                                 f"{expected} = {count} samples x shape {list(sample_shape)}")
            array = array.reshape((count, *sample_shape))
    else:
        if any(d is None for d in sample_shape):
            raise ValueError(f"the model's output '{spec.name}' has a symbolic dimension {list(spec.shape)}; "
                             "text outputs need a fixed per-sample shape (use .npy outputs)")
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            stream = parsers.read_stream(text)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        try:
            array = parsers.text_to_array(stream.values, count, sample_shape, io.pad)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return coerce(array, spec.dtype, path)


def coerce(array: np.ndarray, dtype: np.dtype, path: Path) -> np.ndarray:
    """Cast to the model's output dtype; NaN/Inf or non-integral/out-of-range
    values for an integer output are malformed."""
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path} holds {array.dtype} values, not numbers")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{path} holds {int(bad.sum())} NaN/Inf value(s), first at index {list(first)}")
    if dtype.kind in "iu":
        if array.dtype.kind == "f" and not np.array_equal(array, np.rint(array)):
            raise ValueError(f"{path} holds non-integer values for the {dtype} output")
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ValueError(f"{path} holds values outside the {dtype} range [{info.min}, {info.max}]")
    return array.astype(dtype)


def _values_per_instance(spec: TensorSpec, io: IOConfig) -> int | None:
    shape = spec.shape[1:]
    if not shape or any(d is None for d in shape):
        return None
    return int(np.prod(shape[:-1], dtype=np.int64)) * parsers.padded_size(shape[-1], io.pad)


def apply_perf(perf: Perf, spec: PerfSpec, path: Path, default_vpi: int | None = None) -> None:
    """Fill `perf` from one configured parser over `path`."""
    if not path.is_file():
        if spec.required:
            raise FileNotFoundError(f"{path} was not written (needed by the {spec.parser} parser)")
        perf.extra.setdefault("perf_missing", []).append(f"{spec.parser}: {path} not written")
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    found = False
    if spec.parser == "aiesim_stream":
        timing = parsers.stream_timing(parsers.read_stream(text), spec.values_per_instance or default_vpi, spec.start_ns)
        perf.latency_ns = timing.latency_ns
        if timing.throughput is not None:
            perf.throughput = timing.throughput
        perf.extra.update(aiesim_instances=timing.instances, aiesim_period_ns=timing.period_ns)
        found = True
    elif spec.parser == "aie_kernel_cycles":
        prints = parsers.aie_kernel_cycles(text)
        if prints:
            total, kernels, iterations = parsers.summarize_kernel_cycles(prints)
            perf.cycles = total
            perf.layers = [LayerPerf(name=k.name, op=k.name.split("<")[0], cycles=float(k.total),
                                     start=None if k.start is None else float(k.start)) for k in kernels]
            perf.extra["aie_kernel_iterations"] = iterations
            found = True
    elif spec.parser == "ort_profile":
        profile = parsers.ort_profile(text)
        perf.latency_ns = profile.latency_us * 1e3
        perf.layers = [LayerPerf(name=n.name, op=n.op, extra={"us": round(n.mean_us, 3), "calls": n.calls,
                                                              "provider": n.provider}) for n in profile.nodes]
        perf.extra.update(ort_runs=len(profile.runs_us), ort_by_op_us={k: round(v, 3) for k, v in profile.by_op.items()})
        found = True
    else:
        value = (parsers.cycles_line(text, spec.reduce) if spec.parser == "cycles"
                 else parsers.regex_value(text, spec.regex or "", spec.reduce))
        if value is not None:
            _set_field(perf, spec.field or "cycles", value * spec.scale)
            found = True
    if not found:
        what = f"regex {spec.regex!r}" if spec.parser == "regex" else f"the {spec.parser} parser"
        if spec.required:
            raise ValueError(f"{what} found nothing in {path}")
        perf.extra.setdefault("perf_missing", []).append(f"{spec.parser}: nothing found in {path}")


def _set_field(perf: Perf, name: str, value: float) -> None:
    if name in SCALAR_FIELDS:
        setattr(perf, name, float(value))
    elif name.startswith("resources."):
        key = name.split(".", 1)[1]
        perf.resources[key] = int(round(value))
    else:
        perf.extra[name.split(".", 1)[1]] = value


def _combine(perfs: list[Perf]) -> Perf:
    """One record for several invocations (`batch`): the median of each scalar figure."""
    if len(perfs) == 1:
        return perfs[0]
    first = perfs[0]
    for name in SCALAR_FIELDS:
        values = [getattr(p, name) for p in perfs if getattr(p, name) is not None]
        setattr(first, name, float(statistics.median(values)) if values else None)
    first.extra["invocations"] = len(perfs)
    first.extra["wall_s"] = round(sum(p.extra.get("wall_s", 0.0) for p in perfs), 3)
    return first


# ----- templates ------------------------------------------------------------------------------


def _format(template: str, values: dict[str, str], where: str) -> str:
    try:
        return template.format_map(values)
    except KeyError as exc:
        name = exc.args[0]
        raise TargetError(f"{where}: placeholder {{{name}}} in {template!r} is neither built in "
                          f"({', '.join(PERF_PLACEHOLDERS)}) nor set in the model manifest's [targets.<target>] table") from None


def _try_format(template: str, values: dict[str, str]) -> str | None:
    try:
        return template.format_map(values)
    except (KeyError, ValueError, IndexError):
        return None


def _safe(name: str) -> str:
    """A tensor name usable in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "tensor"


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


__all__ = [
    "CommandTarget",
    "apply_perf",
    "configured_command_targets",
    "loadgen_infer",
    "parse_config",
    "read_output",
    "run_process",
]
