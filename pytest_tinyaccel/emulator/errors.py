"""The emulator's one user-facing error."""

from __future__ import annotations


class UnsupportedOpError(Exception):
    """A node the emulator cannot execute, found when the graph is loaded.

    The message names the model file, the node and its op type, because the
    person reading it has to find that node in the model (Netron, onnx.helper)
    and either change the export or extend the emulator.
    """

    def __init__(self, model: str, node: str, op_type: str, problem: str) -> None:
        self.model, self.node, self.op_type, self.problem = model, node, op_type, problem
        super().__init__(f"{model}: node '{node}' ({op_type}): {problem}")
