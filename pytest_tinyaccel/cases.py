"""What one test is about: a model on a target, in a mode and a dtype. Its id is
the test id and the key of its profile row, defined here once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import ConfigError
    from .models import Model


def case_id(model: str, target: str, mode: str, dtype: str) -> str:
    """'ic-aie-hw_emu-int8': the test id, the baseline key and the trace file name."""
    return f"{model}-{target}-{mode}-{dtype}"


@dataclass(frozen=True)
class Case:
    """One model x target x mode x dtype."""

    model: Model
    target: str
    mode: str
    dtype: str

    @property
    def id(self) -> str:
        return case_id(self.model.name, self.target, self.mode, self.dtype)


@dataclass(frozen=True)
class BrokenModel:
    """A model folder whose manifest cannot be used, with the problem."""

    folder: str
    error: ConfigError
    dtypes: tuple[str, ...]
    """The dtypes its manifest lists where that much can be read, else every dtype."""


@dataclass(frozen=True)
class BrokenCase:
    """A case of a model whose manifest cannot be used: its tests error with the manifest's problem (the
    other models still run), under the ids and markers the case would have had, so `-m` and `-k` keep them."""

    broken: BrokenModel
    target: str
    mode: str
    dtype: str

    @property
    def id(self) -> str:
        return case_id(self.broken.folder, self.target, self.mode, self.dtype)
