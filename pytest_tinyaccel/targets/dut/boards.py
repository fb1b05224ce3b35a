"""The boards a run may use, from configuration alone.

    [tool.tinyaccel.targets.dut]                 # pyproject.toml: the target's settings
    lease_timeout = 600                          # s a case waits for a free board of its pool
    [tool.tinyaccel.targets.dut.boards.nucleo-1] # one table per board, named by its label
    port = "/dev/serial/by-id/usb-STMicro...-if02"
    models = ["kws"]                             # the models its firmware carries

A model's manifest may hold board tables too (`[targets.dut.boards.<label>]`): those boards
carry that model. The boards that carry a model form its pool.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import ConfigError, Field, at_least, positive, validate
from .codec import INPUTS
from .transport import is_url, present

WHERE = "[tool.tinyaccel.targets.dut]"


def _strings(value: list[Any]) -> str | None:
    ok = all(isinstance(v, str) and v for v in value) and len(set(value)) == len(value)
    return None if ok else f"expected a list of distinct model names, got {value!r}"


def _boards(value: dict[str, Any]) -> str | None:
    bad = [label for label, table in value.items() if not isinstance(table, dict)]
    return f"expected one table per board ([...boards.<label>]), got {bad}" if bad else None


TARGET_SCHEMA = {
    "boards": Field(dict, {}, check=_boards),
    "lease_timeout": Field(float, 600.0, check=positive),
    "lock_dir": Field(str, ""),
    "latency_iterations": Field(int, 10, check=at_least(1)),
    "warmup": Field(int, 1, check=at_least(0)),
    "reconnect_timeout": Field(float, 10.0, check=positive),
}
BOARD_SCHEMA = {
    "port": Field(str, check=lambda v: None if v.strip() else "expected a device path or a pyserial URL"),
    "baud": Field(int, 115200, check=at_least(1)),
    "models": Field(list, [], check=_strings),
    "input": Field(str, "quantized", choices=INPUTS),
    "timeout": Field(float, 5.0, check=positive),
    "infer_timeout": Field(float, 60.0, check=positive),
}
MANIFEST_SCHEMA = {"boards": TARGET_SCHEMA["boards"]}


@dataclass(frozen=True)
class Board:
    """One configured board."""

    label: str
    port: str
    baud: int
    models: tuple[str, ...]
    input: str
    timeout: float
    """Seconds a command may take before the board counts as silent."""
    infer_timeout: float
    """The same, for an `infer` (N inferences after W warm-ups)."""

    @property
    def key(self) -> str:
        """What its lease is named by: the port, links resolved (two names of one device are one board)."""
        return self.port if is_url(self.port) else os.path.realpath(self.port)

    @property
    def present(self) -> bool:
        return present(self.port)

    def where(self) -> str:
        return f"{self.label} on {self.port}"


def parse_boards(table: dict[str, Any], where: str | Path, model: str | None = None) -> list[Board]:
    """Board tables (a pyproject's, or a manifest's whose boards carry `model`)."""
    boards = []
    for label, raw in table.items():
        values = validate(raw, BOARD_SCHEMA, where, prefix=f"boards.{label}.")
        models = tuple(values["models"]) + ((model,) if model and model not in values["models"] else ())
        if not models:
            raise ConfigError(where, f"boards.{label}.models", "missing: list the models its firmware carries")
        boards.append(
            Board(
                label=label,
                port=values["port"],
                baud=values["baud"],
                models=models,
                input=values["input"],
                timeout=values["timeout"],
                infer_timeout=values["infer_timeout"],
            )
        )
    return boards


def pool(configured: list[Board], manifest: dict[str, Any], manifest_path: Path, model: str) -> list[Board]:
    """The boards that carry `model`: the pyproject's and its manifest's (a label used in both must
    name the same port)."""
    options = validate(manifest, MANIFEST_SCHEMA, manifest_path, prefix="targets.dut.")
    found = {b.label: b for b in configured if model in b.models}
    for board in parse_boards(options["boards"], manifest_path, model):
        other = next((b for b in configured if b.label == board.label), None)
        if other is not None and other.port != board.port:
            raise ConfigError(
                manifest_path,
                f"targets.dut.boards.{board.label}.port",
                f"{board.port!r}, but {WHERE} has board {board.label!r} on {other.port!r}: use another label",
            )
        found[board.label] = board
    return list(found.values())
