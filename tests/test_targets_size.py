"""Size limits the project keeps, walked with `ast` so a new function or module is covered:
no function in `targets/` over 80 lines, and no module of the package over 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "pytest_tinyaccel"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500


def long_functions(root: Path, limit: int) -> list[str]:
    """'path:line name (N lines)' for every function or method longer than `limit` lines under `root`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = (node.end_lineno or node.lineno) - first + 1
                if lines > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_in_targets_is_over_80_lines() -> None:
    assert long_functions(PACKAGE / "targets", MAX_FUNCTION_LINES) == []


def test_no_module_is_over_500_lines() -> None:
    sizes = {path: len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")}
    assert [f"{p.relative_to(REPO)} ({n} lines)" for p, n in sizes.items() if n > MAX_MODULE_LINES] == []


def test_the_walk_finds_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    (found,) = long_functions(tmp_path, MAX_FUNCTION_LINES)
    assert found.endswith(f"long ({MAX_FUNCTION_LINES + 1} lines)")
