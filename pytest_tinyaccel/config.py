"""One way to validate configuration: model manifests, target settings, command
tables and tool options all go through `validate`, and every problem is a
`ConfigError` that names the file (and table), the key, what is wrong and what
is allowed, because the person reading it has just edited that file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration problem the user can fix: where (file, table), which key, what is wrong."""

    def __init__(self, where: str | Path, key: str, problem: str) -> None:
        self.where, self.key, self.problem = str(where), key, problem
        super().__init__(f"{where}: key '{key}': {problem}")


class ManifestWarning(UserWarning):
    """A manifest that works but probably does not say what its author means (pytest lists it)."""


REQUIRED: Any = object()
"""Default of a field that must be given."""


@dataclass(frozen=True)
class Field:
    """One key of a table: its type, default, allowed values and an extra check.

    `kind` is a Python type (int excludes bool; float accepts int; NaN and
    infinities are refused), a tuple of types, or "any". `check` returns a
    problem sentence, or None when the value is fine.
    """

    kind: type | tuple[type, ...] | str
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], str | None] | None = None


def _type_name(kind: type | tuple[type, ...] | str) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind if isinstance(kind, str) else {"dict": "table", "str": "string"}.get(kind.__name__, kind.__name__)


def check_value(value: Any, field: Field, where: str | Path, key: str) -> Any:
    """`value` converted and checked against `field` (ConfigError if it does not fit)."""
    kind = field.kind
    if not isinstance(kind, str):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            raise ConfigError(where, key, f"expected {_type_name(kind)}, got {type(value).__name__} {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(where, key, f"expected a finite number, got {value!r}")
    if field.choices is not None and value not in field.choices:
        raise ConfigError(where, key, f"{value!r} is not one of {list(field.choices)}")
    if field.check is not None:
        problem = field.check(value)
        if problem:
            raise ConfigError(where, key, problem)
    return value


def validate(
    table: Mapping[str, Any], schema: Mapping[str, Field], where: str | Path, prefix: str = ""
) -> dict[str, Any]:
    """Every key of `schema` with its checked value or default; unknown or missing keys are errors."""
    if not isinstance(table, Mapping):
        raise ConfigError(where, prefix.rstrip(".") or "(table)", f"expected a table, got {type(table).__name__}")
    unknown = sorted(set(table) - set(schema))
    if unknown:
        raise ConfigError(where, prefix + unknown[0], f"unknown key; allowed: {', '.join(schema) or 'none'}")
    values = {}
    for key, field in schema.items():
        if key in table:
            values[key] = check_value(table[key], field, where, prefix + key)
        elif field.default is REQUIRED:
            raise ConfigError(where, prefix + key, "missing (required)")
        else:
            values[key] = field.default
    return values


def at_least(low: float) -> Callable[[Any], str | None]:
    """A `Field.check`: the number is >= low."""
    return lambda v: None if v >= low else f"must be at least {low:g}, got {v!r}"


def positive(value: float) -> str | None:
    """A `Field.check`: the number is > 0."""
    return None if value > 0 else f"must be a positive number, got {value!r}"


def between(low: float, high: float) -> Callable[[Any], str | None]:
    """A `Field.check`: low <= number <= high."""
    return lambda v: None if low <= v <= high else f"must be between {low:g} and {high:g}, got {v!r}"
