"""The mutation-testing configuration stays true to the code (bash .ci/mutation; docs/development.md):
every module of modules.toml names a file, functions and tests that exist; every entry of
equivalent.txt parses, has a reason and names a function of a mutated file; and the driver reads
mutmut's names and diffs as documented."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from mutation import run

REPO = Path(__file__).resolve().parents[1]


def functions_of(path: Path) -> set[str]:
    """Top-level functions and Class.method names of a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {f"{node.name}.{f.name}" for f in node.body if isinstance(f, ast.FunctionDef)}
    return names


def test_every_module_names_a_file_functions_and_tests_that_exist():
    modules, threshold, ci = run.load_modules()
    assert threshold == 90.0 and set(ci) <= set(modules) and ci
    for name, module in modules.items():
        source = REPO / module.file
        assert source.is_file(), name
        known = functions_of(source)
        for function in module.functions:
            assert function == "*" or function in known, f"{name}: no function {function} in {module.file}"
        for test in module.tests:
            assert (REPO / test).is_file(), f"{name}: no test file {test}"


def test_every_equivalent_mutant_has_a_reason_and_names_a_mutated_function():
    modules, _, _ = run.load_modules()
    files = {m.file for m in modules.values()}
    entries = run.load_equivalent()
    assert entries
    for e in entries:
        assert e.file in files, f"equivalent.txt:{e.line}: {e.file} is not mutated"
        assert e.function in functions_of(REPO / e.file), f"equivalent.txt:{e.line}: no {e.function} in {e.file}"
        assert (
            len(e.reason) > 10 and any(d.startswith("- ") for d in e.diff) and any(d.startswith("+ ") for d in e.diff)
        )
    keys = [(e.file, e.function, e.diff) for e in entries]
    assert len(keys) == len(set(keys)), "an equivalent mutant is listed twice"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("because: no entry", 3, "'because:' needs a file::function line, diff lines and a reason"),
        ("a.py::f\n- x\n+ y\n", 3, "the entry has no 'because: reason' line"),
        ("a.py::f\n- x\n+ y\nbecause:", 6, "'because:' needs a file::function line, diff lines and a reason"),
        ("a.py::f\nstray text\n", 4, "expected 'file::function', '-'/'+' lines or 'because: reason'"),
    ],
)
def test_a_malformed_equivalent_list_names_the_line_and_the_problem(tmp_path, text, line, problem):
    path = tmp_path / "equivalent.txt"
    path.write_text("# comment\n\n" + text)
    with pytest.raises(ValueError) as info:
        run.load_equivalent(path)
    assert str(info.value) == f"{path}:{line}: {problem}"


def test_equivalent_entries_parse_with_whitespace_collapsed(tmp_path):
    path = tmp_path / "equivalent.txt"
    path.write_text("p/m.py::C.f\n-   x  = 1\n+ x = 2\nbecause: the reason\n")
    (entry,) = run.load_equivalent(path)
    assert (entry.file, entry.function, entry.diff, entry.reason, entry.line) == (
        "p/m.py", "C.f", ("- x = 1", "+ x = 2"), "the reason", 1,
    )  # fmt: skip


def test_mutmut_names_and_diffs_as_the_driver_reads_them():
    assert run.function_of("pytest_tinyaccel.report.x_to_csv__mutmut_12") == "to_csv"
    assert run.function_of("pytest_tinyaccel.goldens.compare.xǁ_Scanǁ_keep__mutmut_4") == "_Scan._keep"
    diff = "--- a.py\n+++ a.py\n@@ -1,2 +1,2 @@\n def f():\n-    return  1\n+    return 2"
    assert run.changed_lines(diff) == ("- return 1", "+ return 2")
    module = run.Module("m", "pkg/mod.py", ["f", "C.g", "*"], [])
    assert module.patterns() == ["pkg.mod.x_f__mutmut_*", "pkg.mod.xǁCǁg__mutmut_*", "pkg.mod.*__mutmut_*"]


def test_the_score_leaves_equivalent_mutants_out():
    module = run.Module("m", "pkg/mod.py", ["*"], [])
    eq = run.Equivalent("pkg/mod.py", "f", ("- a", "+ b"), "why", 1)
    result = run.Result(module, {"killed": 18, "survived": 2, "timeout": 1})
    result.survivors = [("k1", "survived", ("- a", "+ b"), eq), ("k2", "survived", ("- c", "+ d"), None)]
    assert result.equivalent == 1 and result.score == pytest.approx(100 * 19 / 20)
    text = run.report(result, 90.0)
    assert "21 mutants: 18 killed, 2 survived, 1 timeout; 1 listed equivalent" in text
    assert (
        "score 95.0%" in text and "ok" in text and "NOT LISTED" in text and "equivalent (equivalent.txt:1): why" in text
    )
    assert "BELOW 90%" in run.report(run.Result(module, {"killed": 1, "survived": 1}), 90.0)
