"""The run's options, checked before any test runs: a typo or an impossible path is one
clear usage error at the start, never a traceback at the end or a silently empty run.

The parsers below are argparse `type=` functions: the command line is checked while
pytest parses it (an ArgumentTypeError names the option), and `ini_value` checks an ini
value with the same parser. What depends on the targets or the file system is checked
once the plugin is configured (`check_options`, `check_selection`, `check_output_path`).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .config import ConfigError
from .margins import DEFAULT_MARGINS, parse_margins
from .models import DTYPES

T = TypeVar("T")
REPORT_SUFFIXES = (".csv", ".json", ".md", ".html")
"""Every --tinyaccel-report format, by suffix."""

PATH_OPTIONS = (
    "--tinyaccel-report",
    "--tinyaccel-models",
    "--tinyaccel-golden",
    "--tinyaccel-baseline",
    "--tinyaccel-save-baseline",
    "--tinyaccel-trace",
)


class OptionError(ValueError):
    """An option value that cannot work; the message names the option and what to do."""


@dataclass
class Options:
    models_dir: Path
    golden_dir: Path
    cache_dir: Path
    selection: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    samples: int | None = None
    update_golden: bool = False
    baseline: Path | None = None
    margins: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MARGINS))
    upgrade_tolerance: float = 0.01
    trace_dir: Path | None = None
    loadgen: bool = False
    strict_support: bool = False
    """A model a target cannot run fails its cases instead of skipping them."""
    executor: str = "local"
    """Where cases build and run: local, processes[:N] or dask://HOST:PORT (executor.py)."""
    path_args: tuple[str, ...] = ()
    """The user's --tinyaccel-models/--tinyaccel-golden, to repeat in suggested commands."""


# ----- argparse type= parsers: one value in, the checked value out, ArgumentTypeError naming what to do


def tokens(value: str) -> tuple[str, ...]:
    """'cpu,aie:hw_emu' -> ('cpu', 'aie:hw_emu'); repeated options add up."""
    return tuple(v.strip() for v in value.split(",") if v.strip())


def dtypes(value: str) -> tuple[str, ...]:
    found = tokens(value)
    bad = [d for d in found if d not in DTYPES]
    if bad:
        raise argparse.ArgumentTypeError(f"{','.join(bad)}: not a dtype; choose from {', '.join(DTYPES)}")
    return found


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number}: give at least 1 (accuracy on the first N samples)")
    return number


def tolerance(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number; give a finite number >= 0, e.g. 0.01") from None
    if not math.isfinite(number) or number < 0:
        raise argparse.ArgumentTypeError(f"{value}: give a finite number >= 0")
    return number


def margins(value: str) -> dict[str, float]:
    try:
        return parse_margins(value, "margins")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("margins: ")) from None


def executor(value: str) -> str:
    """local, processes, processes:N or dask://HOST:PORT (connecting is done later)."""
    count = value.partition(":")[2]
    ok = value in ("local", "processes") or (value.startswith("processes:") and count.isdigit() and int(count) >= 1)
    if not ok and value.startswith("dask://"):
        host, _, port = value.removeprefix("dask://").rpartition(":")
        ok = bool(host) and port.isdigit()
    if not ok:
        raise argparse.ArgumentTypeError(f"{value!r}: use local, processes, processes:N (N >= 1) or dask://HOST:PORT")
    return value


def report_path(value: str) -> str:
    if Path(value).suffix not in REPORT_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{value}: the suffix must be one of {', '.join(REPORT_SUFFIXES)}")
    return value


def ini_value(name: str, value: str, parse: Callable[[str], T]) -> T:
    """An ini value checked by the command line's parser; OptionError names the key and the value."""
    try:
        return parse(value)
    except argparse.ArgumentTypeError as exc:
        raise OptionError(f"ini {name} = {value!r}: {exc}") from None


def check_options(options: Options, models_explicit: bool) -> None:
    """Values that are wrong whatever the models hold."""
    if models_explicit and not options.models_dir.is_dir():
        raise OptionError(
            f"--tinyaccel-models {options.models_dir}: no such folder (it should hold one folder per model)"
        )
    models, golden = options.models_dir.resolve(), options.golden_dir.resolve()
    if golden == models or models in golden.parents:
        raise OptionError(
            f"--tinyaccel-golden {options.golden_dir}: goldens must live outside the models folder "
            f"{options.models_dir} "
            "(an update rewrites golden folders and must never touch model data)"
        )
    if options.baseline is not None and not options.baseline.is_file():
        raise OptionError(
            f"--tinyaccel-baseline {options.baseline}: no such file (save one with --tinyaccel-save-baseline)"
        )


def check_selection(selection: Sequence[str], modes_of: dict[str, tuple[str, ...]]) -> None:
    """--target tokens: each a mode, a target or a target:mode pair of the registered targets."""
    modes = {m for target_modes in modes_of.values() for m in target_modes}
    for token in selection:
        target, _, mode = token.partition(":")
        ok = (token in modes or token in modes_of) if not mode else mode in modes_of.get(target, ())
        if not ok:
            choices = sorted(modes) + sorted(modes_of) + [f"{n}:{m}" for n, ms in modes_of.items() for m in ms]
            raise OptionError(
                f"--target {token!r}: not a mode, target or target:mode; choose from {', '.join(choices)}"
            )


def check_output_path(option: str, path: Path) -> None:
    """A file the run will write at its end: fail now if it cannot be written."""
    if path.is_dir():
        raise OptionError(f"{option} {path}: is a folder; give a file name")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OptionError(f"{option} {path}: {parent} is not a writable folder")


def check_space_form(args: Sequence[str], invocation_dir: Path, rootdir_given: bool) -> None:
    """pytest chooses its rootdir before plugin options exist, so `--tinyaccel-report /abs/x.md`
    (space form) makes it read `/abs/x.md` as a test path and may move the rootdir; the run then
    finds no models and exits 5 without a word. Say so, with the fix."""
    if rootdir_given:
        return
    for option, value in zip(args, args[1:]):
        if option in PATH_OPTIONS and not value.startswith("-"):
            path = Path(value) if Path(value).is_absolute() else invocation_dir / value
            if not path.resolve().is_relative_to(invocation_dir.resolve()):
                raise OptionError(
                    f"{option} {value}: pytest reads a path given this way as a test path while it chooses its "
                    f"rootdir; "
                    f"write {option}={value}"
                )
