"""The configuration of a command target: a `[tool.tinyaccel.targets.<name>]` table
with `kind = "command"`, read into frozen dataclasses once at start-up.

Every key goes through the project's validator (`pytest_tinyaccel.config`), so a
mistake is a `ConfigError` naming the table (`[tool.tinyaccel.targets.<name>]`,
or `.<mode>` for a per-mode table) and the key, before any test runs. Mode keys
given at the top level apply to every mode; a mode table replaces them, except
`env` (merged, the mode's entries winning) and `requires` (joined).
docs/command-target.md documents every key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ...config import ConfigError, Field, at_least, positive, validate
from ...readers.simlogs import REDUCERS
from ..base import MODES
from .templates import COMMON_PLACEHOLDERS, PERF_PLACEHOLDERS, RUN_PLACEHOLDERS, argv, template, template_problem

KIND = "command"
PARSERS = ("aiesim_stream", "aie_kernel_cycles", "ort_profile", "cycles", "regex")
SCALAR_FIELDS = ("cycles", "latency_ns", "throughput", "clock_hz", "efficiency")
RUN_FOLDER = ("rundir", "samples", "index")
"""Placeholders of a run's files (inputs, outputs) besides the common ones."""


@dataclass(frozen=True)
class IOConfig:
    """How input files are written or output files read."""

    format: str
    path: str
    values_per_line: int
    pad: int | None
    pad_value: float
    fmt: str | None
    dir: str = "{rundir}/outputs"


@dataclass(frozen=True)
class PerfSpec:
    """One perf parser: which file, which parser, which field it fills."""

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
    """Everything one mode (sw_emu, hw_emu, hw) runs and reads."""

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
    """One validated `[tool.tinyaccel.targets.<name>]` table."""

    name: str
    modes: dict[str, ModeConfig]
    description: str
    version: str
    depends: tuple[str, ...]
    keep_runs: int
    kill_grace: float
    tolerance: dict[str, dict[str, float]]
    cache_results: bool
    """Keep simulated (non-hw) results keyed by build and inputs; off by default, since an external
    flow may depend on more than the plugin hashes (tool installs, environment)."""


# ----- checks (Field.check: a problem sentence, or None) --------------------------------------


def _strings(meaning: str) -> Callable[[list[Any]], str | None]:
    return lambda value: None if all(isinstance(v, str) and v for v in value) else f"must be a list of {meaning}"


def _modes(value: list[Any]) -> str | None:
    if value and all(m in MODES for m in value):
        return None
    return f"must be a non-empty list drawn from {list(MODES)} (or give one table per mode), got {value!r}"


def _env(value: dict[str, Any]) -> str | None:
    for key, text in value.items():
        if isinstance(text, bool) or not isinstance(text, (str, int, float)):
            return f'must be a table of NAME = "value", got {key} = {text!r}'
        problem = template_problem(str(text), COMMON_PLACEHOLDERS)
        if problem:
            return f"{key}: {problem}"
    return None


def _pad(value: str | int) -> str | None:
    if value in ("line", "none") or (isinstance(value, int) and value >= 0):
        return None
    return (
        "must be 'line' (pad the last dimension to a multiple of values_per_line), 'none', "
        f"or a positive integer, got {value!r}"
    )


def _printf(value: str) -> str | None:
    try:
        value % 1.5
    except (TypeError, ValueError):
        return f"must be a printf-style format for one number such as '%.9g', got {value!r}"
    return None


def _regex(value: str) -> str | None:
    try:
        re.compile(value)
    except re.error as exc:
        return f"invalid regular expression: {exc}"
    return None


# ----- schemas --------------------------------------------------------------------------------

TOP_FIELDS: dict[str, Field] = {
    "kind": Field(str, KIND, choices=(KIND,)),
    "modes": Field(list, None, check=_modes),
    "description": Field(str, ""),
    "version": Field((str, int), "1"),
    "depends": Field(list, [], check=_strings("glob patterns relative to the project root")),
    "keep_runs": Field(int, 5, check=at_least(1)),
    "kill_grace": Field(float, 3.0, check=positive),
    "tolerance": Field(dict, {}),
    "cache_results": Field(bool, False),
}
MODE_FIELDS: dict[str, Field] = {
    "build": Field((list, str), None, check=argv(COMMON_PLACEHOLDERS)),
    "run": Field((list, str), None, check=argv(RUN_PLACEHOLDERS)),
    "timeout": Field(float, 600.0, check=positive),
    "build_timeout": Field(float, None, check=positive),
    "env": Field(dict, {}, check=_env),
    "cwd": Field(str, "{root}", check=template(COMMON_PLACEHOLDERS)),
    "requires": Field(list, [], check=_strings("executable names that must be on PATH")),
    "batch": Field(int, 0, check=at_least(0)),
    "inputs": Field(dict, {}),
    "outputs": Field(dict, {}),
    "perf": Field((list, dict), []),
    "clock_hz": Field(float, None, check=positive),
    "simulator": Field(str, None),
    "layers": Field(str, None, check=template(RUN_PLACEHOLDERS)),
}
_IO_FIELDS: dict[str, Field] = {
    "format": Field(str, "npy", choices=("npy", "txt")),
    "values_per_line": Field(int, 1, check=at_least(1)),
    "pad": Field((str, int), "none", check=_pad),
    "pad_value": Field(float, 0.0),
    "fmt": Field(str, None, check=_printf),
}
INPUT_FIELDS: dict[str, Field] = {
    "path": Field(str, None, check=template(COMMON_PLACEHOLDERS + RUN_FOLDER + ("input",))),
    **_IO_FIELDS,
}
OUTPUT_FIELDS: dict[str, Field] = {
    "path": Field(str, None, check=template(COMMON_PLACEHOLDERS + RUN_FOLDER + ("output", "outputs"))),
    "dir": Field(str, "{rundir}/outputs", check=template(COMMON_PLACEHOLDERS + RUN_FOLDER)),
    **_IO_FIELDS,
}
PERF_FIELDS: dict[str, Field] = {
    "parser": Field(str, None, choices=PARSERS),
    "file": Field(str, "{stdout}", check=template(PERF_PLACEHOLDERS)),
    "field": Field(str, None),
    "regex": Field(str, None, check=_regex),
    "reduce": Field(str, "last", choices=REDUCERS),
    "scale": Field(float, 1.0),
    "required": Field(bool, True),
    "fresh": Field(bool, False),
    "values_per_instance": Field(int, None, check=at_least(1)),
    "start_ns": Field(float, 0.0),
}
TOLERANCE_FIELDS: dict[str, Field] = {
    "atol": Field(float, None, check=at_least(0)),
    "rtol": Field(float, None, check=at_least(0)),
}

_ABSENT: Any = object()
_GIVEN_MODE_FIELDS = {k: replace(f, default=_ABSENT) for k, f in MODE_FIELDS.items()}
"""Mode keys without defaults: a mode table's absent keys fall back to the target's table."""
_TABLE_FIELDS = {**TOP_FIELDS, **_GIVEN_MODE_FIELDS, **{m: Field(dict, _ABSENT) for m in MODES}}
"""The target's own table: its keys, mode keys shared by all modes, and one table per mode."""


# ----- parsing --------------------------------------------------------------------------------


def parse_config(name: str, table: Mapping[str, Any]) -> CommandConfig:
    """Validate one `[tool.tinyaccel.targets.<name>]` table (kind = "command")."""
    if not name.isidentifier():
        raise ConfigError(
            "[tool.tinyaccel.targets]", name, "a command target's name must be an identifier (letters, digits, _)"
        )
    where = f"[tool.tinyaccel.targets.{name}]"
    values = validate(table, _TABLE_FIELDS, where)
    tables = {m: values[m] for m in MODES if values[m] is not _ABSENT}
    modes = values["modes"] if values["modes"] is not None else [m for m in MODES if m in tables]
    problem = _modes(modes)
    if problem:
        raise ConfigError(where, "modes", problem)
    extra = set(tables) - set(modes)
    if extra:
        raise ConfigError(where, "modes", f"lists {modes} but tables exist for {sorted(extra)}")

    defaults = _mode_settings({k: f.default for k, f in MODE_FIELDS.items()}, where)
    shared = _mode_settings({k: values[k] for k in MODE_FIELDS if values[k] is not _ABSENT}, where)
    parsed = {}
    for mode in modes:
        mode_where = f"[tool.tinyaccel.targets.{name}.{mode}]"
        own = validate(tables.get(mode, {}), _GIVEN_MODE_FIELDS, mode_where)
        own = _mode_settings({k: v for k, v in own.items() if v is not _ABSENT}, mode_where)
        settings = {**defaults, **shared, **own}
        settings["env"] = {**shared.get("env", {}), **own.get("env", {})}
        settings["requires"] = tuple(dict.fromkeys(shared.get("requires", ()) + own.get("requires", ())))
        if settings["run"] is None:
            raise ConfigError(
                mode_where, "run", "missing: the command (argv list) that runs the inputs through the build"
            )
        if settings["build_timeout"] is None:
            settings["build_timeout"] = settings["timeout"]
        parsed[mode] = ModeConfig(mode=mode, **settings)

    tolerance = {
        dtype: {k: v for k, v in validate(t, TOLERANCE_FIELDS, where, f"tolerance.{dtype}.").items() if v is not None}
        for dtype, t in values["tolerance"].items()
    }
    return CommandConfig(
        name=name,
        modes=parsed,
        description=values["description"],
        version=str(values["version"]),
        depends=tuple(values["depends"]),
        keep_runs=values["keep_runs"],
        kill_grace=values["kill_grace"],
        tolerance=tolerance,
        cache_results=values["cache_results"],
    )


def _mode_settings(given: dict[str, Any], where: str) -> dict[str, Any]:
    """Checked mode keys (those given) with their values in ModeConfig's types; the
    nested tables (inputs, outputs, perf) are checked here, their errors naming `where`."""
    out = dict(given)
    for key in ("build", "run", "requires"):
        if out.get(key) is not None:
            out[key] = tuple(out[key])
    if "env" in out:
        out["env"] = {k: str(v) for k, v in out["env"].items()}
    if "inputs" in out:
        out["inputs"] = _io(out["inputs"], INPUT_FIELDS, where, "inputs")
    if "outputs" in out:
        out["outputs"] = _io(out["outputs"], OUTPUT_FIELDS, where, "outputs")
    if "perf" in out:
        entries = [out["perf"]] if isinstance(out["perf"], dict) else out["perf"]
        out["perf"] = tuple(_perf(entry, where, f"perf[{i}].") for i, entry in enumerate(entries))
    return out


def _io(table: Mapping[str, Any], schema: dict[str, Field], where: str, kind: str) -> IOConfig:
    v = validate(table, schema, where, f"{kind}.")
    path = v["path"] or (
        f"{{rundir}}/inputs/{{input}}.{v['format']}" if kind == "inputs" else f"{{outputs}}/{{output}}.{v['format']}"
    )
    if v["pad"] == "line":
        pad = v["values_per_line"]
    else:
        pad = None if v["pad"] in ("none", 0) else v["pad"]
    return IOConfig(
        format=v["format"],
        path=path,
        values_per_line=v["values_per_line"],
        pad=pad,
        pad_value=v["pad_value"],
        fmt=v["fmt"],
        dir=v.get("dir", "{rundir}/outputs"),
    )


def _perf(table: Any, where: str, prefix: str) -> PerfSpec:
    v = validate(table, PERF_FIELDS, where, prefix)
    parser, regex, field = v["parser"] or ("regex" if v["regex"] is not None else None), v["regex"], v["field"]
    if parser is None:
        raise ConfigError(where, prefix + "parser", f"missing: one of {', '.join(PARSERS)} (or give `regex`)")
    if parser == "regex" and regex is None:
        raise ConfigError(
            where, prefix + "regex", "missing: a regular expression whose group 1 (or group `value`) is the number"
        )
    if parser != "regex" and regex is not None:
        raise ConfigError(where, prefix + "regex", f"only for parser 'regex', not {parser!r}")
    if parser in ("regex", "cycles"):
        field = field or ("cycles" if parser == "cycles" else None)
        if not isinstance(field, str) or not (field in SCALAR_FIELDS or re.fullmatch(r"(resources|extra)\.\w+", field)):
            raise ConfigError(
                where,
                prefix + "field",
                f"must be one of {', '.join(SCALAR_FIELDS)}, resources.<Name> or extra.<name>, got {field!r}",
            )
    elif field is not None:
        raise ConfigError(where, prefix + "field", f"parser {parser!r} sets its own fields")
    return PerfSpec(
        parser=parser,
        file=v["file"],
        field=field,
        regex=regex,
        reduce=v["reduce"],
        scale=v["scale"],
        required=v["required"],
        values_per_instance=v["values_per_instance"],
        start_ns=v["start_ns"],
        fresh=v["fresh"],
    )
