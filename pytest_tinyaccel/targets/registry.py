"""Where targets come from: the `pytest_tinyaccel.targets` entry-point group and
whatever conftests or plugins return from the `pytest_tinyaccel_targets` hook."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from ..config import ConfigError
from .base import MODES, Target, TargetError

ENTRY_POINT_GROUP = "pytest_tinyaccel.targets"


def entry_point_targets() -> list[type[Target]]:
    """Target classes advertised by installed packages (this one included)."""
    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found.append(ep.load())
        except Exception as exc:  # a broken third-party package must not hide the others
            raise TargetError(f"cannot load target entry point {ep.name!r} ({ep.value}): {exc}") from exc
    return found


def configured_targets(settings: dict[str, Any], root: Path) -> tuple[list[Target], dict[str, Any]]:
    """Targets defined by configuration alone: every `[tool.tinyaccel.targets.<name>]`
    table with `kind = "command"` becomes a CommandTarget named `<name>`.
    Returns them and the remaining tables (settings for registered classes)."""
    if not any(isinstance(table, dict) and "kind" in table for table in settings.values()):
        return [], dict(settings)  # the command target's modules load only when a table asks for one
    from .command import configured_command_targets

    targets, rest = configured_command_targets(settings, root)
    return list(targets), rest


def build_registry(
    candidates: Iterable[type[Target] | Target],
    settings: dict[str, dict[str, Any]],
) -> dict[str, Target]:
    """Instantiate candidates with their settings; later registrations of a name win,
    so a conftest can replace a shipped target."""
    registry: dict[str, Target] = {}
    for candidate in candidates:
        if isinstance(candidate, Target):
            target = candidate
        elif isinstance(candidate, type) and issubclass(candidate, Target):
            options = settings.get(candidate.name, {})
            try:
                target = candidate(**options)
            except TypeError as exc:  # a third-party target whose __init__ does not take these keywords
                raise ConfigError(
                    f"[tool.tinyaccel.targets.{candidate.name}]",
                    ", ".join(sorted(options)) or "(none)",
                    f"not accepted by {candidate.__name__}: {exc}",
                ) from exc
        else:
            raise TargetError(f"not a Target subclass or instance: {candidate!r}")
        _validate(target)
        registry[target.name] = target
    unknown = sorted(set(settings) - set(registry))
    if unknown:
        raise TargetError(f"[tool.tinyaccel.targets] configures unknown target(s) {unknown}; known: {sorted(registry)}")
    return registry


def _validate(target: Target) -> None:
    if not target.name or not target.name.isidentifier():
        raise TargetError(f"target {target!r} needs a `name` that is an identifier")
    bad = [m for m in target.modes if m not in MODES]
    if not target.modes or bad:
        raise TargetError(f"target {target.name!r}: modes must be a non-empty subset of {MODES}, got {target.modes}")
