"""The emulator's user-facing errors: what it refuses, found when the graph is loaded."""

from __future__ import annotations


class UnsupportedOpError(Exception):
    """A node the emulator cannot execute, found when the graph is loaded.

    The message names the model file, the node and its op type, because the
    person reading it has to find that node in the model (Netron, onnx.helper)
    and either change the export or extend the emulator.
    """

    def __init__(self, model: str, node: str, op_type: str, problem: str) -> None:
        self.model, self.node, self.op_type, self.problem = model, node, op_type, problem
        super().__init__(self._message())

    def _message(self) -> str:
        return f"{self.model}: node '{self.node}' ({self.op_type}): {self.problem}"


class UnsupportedTypeError(UnsupportedOpError):
    """A graph input, output or constant of a type the emulator does not run (bfloat16, a sequence ...).

    `node` holds the tensor's name and `op_type` its role ("graph input",
    "graph output", "initializer"), so code that reports UnsupportedOpError
    reports this too.
    """

    def _message(self) -> str:
        return f"{self.model}: {self.op_type} '{self.node}' {self.problem}"
