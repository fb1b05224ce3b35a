"""Placeholders of the command target: which exist where, the check of a template
when the configuration is read, and the filling in when a command runs.

Arguments, `cwd`, `env` values and file paths are `str.format` templates. The
built-in names depend on the moment (a build has no run folder, only perf files
see the run's logs); any other plain name is a key of the model manifest's
`[targets.<name>]` table, known only when a model runs.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

from ..base import TargetError

COMMON_PLACEHOLDERS = ("model", "workdir", "mode", "dtype", "name", "target", "root", "python")
RUN_PLACEHOLDERS = COMMON_PLACEHOLDERS + ("rundir", "inputs", "outputs", "samples", "index", "layers")
PERF_PLACEHOLDERS = RUN_PLACEHOLDERS + ("stdout", "stderr")
TENSOR_PLACEHOLDERS = ("input", "output")
"""The tensor's file-name-safe name, in `inputs.path` / `outputs.path`."""


def template_problem(text: str, allowed: tuple[str, ...]) -> str | None:
    """What is wrong with `text` as a template where `allowed` are the built-in names, or None.
    Placeholders must be plain names: built-in ones, or keys of the model's manifest table."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        return f"bad placeholder syntax in {text!r}: {exc} (write {{{{ and }}}} for literal braces)"
    for name in fields:
        if not name.isidentifier():
            return f"placeholder {{{name}}} in {text!r} must be a plain name; built-in: {', '.join(allowed)}"
        if name in PERF_PLACEHOLDERS + TENSOR_PLACEHOLDERS and name not in allowed:
            return f"placeholder {{{name}}} is not available here; available: {', '.join(allowed)}"
    return None


def template(allowed: tuple[str, ...]) -> Callable[[str], str | None]:
    """A `Field.check` for a template string."""
    return lambda text: template_problem(text, allowed)


def argv(allowed: tuple[str, ...]) -> Callable[[Any], str | None]:
    """A `Field.check` for an argv list of templates (the Field also admits a string, to say why not)."""

    def check(value: Any) -> str | None:
        if isinstance(value, str):
            return f'must be an argv list such as ["make", "aiesim"], not a shell string ({value!r})'
        if not value or not all(isinstance(a, str) for a in value):
            return "must be a non-empty list of strings (argv)"
        return next((p for p in (template_problem(a, allowed) for a in value) if p), None)

    return check


def fill(text: str, values: dict[str, str], where: str) -> str:
    """`text` with its placeholders filled in; a name the manifest does not set is a TargetError."""
    try:
        return text.format_map(values)
    except KeyError as exc:
        raise TargetError(
            f"{where}: placeholder {{{exc.args[0]}}} in {text!r} is neither built in "
            f"({', '.join(PERF_PLACEHOLDERS)}) nor set in the model manifest's "
            "[targets.<target>] table"
        ) from None


def try_fill(text: str, values: dict[str, str]) -> str | None:
    """`text` filled in from `values`, or None when it needs more (checks before any build exists)."""
    try:
        return text.format_map(values)
    except (KeyError, ValueError, IndexError):
        return None
