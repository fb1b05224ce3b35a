"""What one test is about: a model on a target, in a mode and a dtype. Its id is
the test id and the key of its profile row, defined here once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
