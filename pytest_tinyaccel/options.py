"""The run's options, checked before any test runs: a typo or an impossible path is one
clear usage error at the start, never a traceback at the end or a silently empty run."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .margins import DEFAULT_MARGINS
from .models import DTYPES

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
    executor: str = "local"
    """Where cases build and run: local, processes[:N] or dask://HOST:PORT (executor.py)."""
    path_args: tuple[str, ...] = ()
    """The user's --tinyaccel-models/--tinyaccel-golden, to repeat in suggested commands."""


def check_options(options: Options, models_explicit: bool) -> None:
    """Values that are wrong whatever the models hold."""
    bad = [d for d in options.dtypes if d not in DTYPES]
    if bad:
        raise OptionError(f"--tinyaccel-dtype {','.join(bad)}: not a dtype; choose from {', '.join(DTYPES)}")
    if options.samples is not None and options.samples < 1:
        raise OptionError(f"--tinyaccel-samples {options.samples}: give at least 1 (accuracy on the first N samples)")
    if not math.isfinite(options.upgrade_tolerance) or options.upgrade_tolerance < 0:
        raise OptionError(f"--tinyaccel-upgrade-tolerance {options.upgrade_tolerance}: give a finite number >= 0")
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


def check_output_path(option: str, path: Path, suffixes: Sequence[str] = ()) -> None:
    """A file the run will write at its end: fail now if it cannot be written."""
    if suffixes and path.suffix not in suffixes:
        raise OptionError(f"{option} {path}: the suffix must be one of {', '.join(suffixes)}")
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
