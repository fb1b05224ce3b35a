"""Mutation testing of the gate's core with mutmut (run by `bash .ci/mutation [--ci] [module ...]`).

Per module of `modules.toml`, one at a time: a scratch copy of the package and tests
(mutmut works in a `mutants/` folder beside the sources it reads), mutmut run on the
functions listed with that module's fast unit tests as the test command, then the score
and every surviving mutant, each marked with its entry in `equivalent.txt` or as
NOT LISTED. The score is detected / (mutants - listed equivalent ones); a module below
the threshold fails the run (exit 1).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MODULES = HERE / "modules.toml"
EQUIVALENT = HERE / "equivalent.txt"
DETECTED = {"killed", "timeout", "segfault", "caught by type check"}
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout"}
STATUS |= {37: "caught by type check", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout"}
STATUS |= {-11: "segfault", -9: "segfault"}


@dataclass(frozen=True)
class Module:
    name: str
    file: str
    functions: list[str]
    tests: list[str]

    @property
    def dotted(self) -> str:
        return self.file.removesuffix(".py").replace("/", ".")

    def patterns(self) -> list[str]:
        """mutmut's mutant names of the listed functions: `f` -> x_f, `Class.method` -> xǁClassǁmethod."""
        out = []
        for f in self.functions:
            if f == "*":
                out.append(f"{self.dotted}.*__mutmut_*")
                continue
            mangled = "xǁ" + f.replace(".", "ǁ") if "." in f else "x_" + f
            out.append(f"{self.dotted}.{mangled}__mutmut_*")
        return out


@dataclass(frozen=True)
class Equivalent:
    file: str
    function: str
    diff: tuple[str, ...]
    """The mutant's changed lines ('-'/'+' and the code, whitespace collapsed)."""
    reason: str
    line: int


@dataclass
class Result:
    module: Module
    counts: dict[str, int] = field(default_factory=dict)
    survivors: list[tuple[str, str, tuple[str, ...], Equivalent | None]] = field(default_factory=list)
    stale: list[Equivalent] = field(default_factory=list)
    """Entries of equivalent.txt for the functions run that no surviving mutant matches."""
    seconds: float = 0.0

    @property
    def equivalent(self) -> int:
        return sum(1 for *_, eq in self.survivors if eq is not None)

    @property
    def score(self) -> float:
        total = sum(self.counts.values()) - self.equivalent
        detected = sum(n for s, n in self.counts.items() if s in DETECTED)
        return 100.0 * detected / total if total else 100.0


def load_modules() -> tuple[dict[str, Module], float, list[str]]:
    data = tomllib.loads(MODULES.read_text(encoding="utf-8"))
    modules = {
        name: Module(name, m["file"], list(m.get("functions", ["*"])), list(m["tests"]))
        for name, m in data["modules"].items()
    }
    return modules, float(data["threshold"]), list(data["ci"])


def function_of(mutant: str) -> str:
    """`pkg.mod.xǁClassǁmethod__mutmut_3` -> `Class.method`; `pkg.mod.x_f__mutmut_3` -> `f`."""
    name = mutant.rpartition(".")[2].rpartition("__mutmut_")[0]
    return name[2:].replace("ǁ", ".") if name.startswith("xǁ") else name.removeprefix("x_")


def changed_lines(diff: str) -> tuple[str, ...]:
    """The '-' and '+' lines of a unified diff, whitespace collapsed (headers left out)."""
    lines = diff.splitlines()
    body = [x for x in lines if x[:1] in "-+" and not x.startswith(("---", "+++"))]
    return tuple(f"{x[0]} {' '.join(x[1:].split())}" for x in body)


def load_equivalent(path: Path = EQUIVALENT) -> list[Equivalent]:
    """Entries: a `file::function` line, the mutant's '-'/'+' lines, then `because: reason`."""
    entries: list[Equivalent] = []
    head: tuple[str, str, int] | None = None
    diff: list[str] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("because:"):
            if head is None or not diff or not text[8:].strip():
                raise ValueError(f"{path}:{number}: 'because:' needs a file::function line, diff lines and a reason")
            entries.append(Equivalent(head[0], head[1], tuple(diff), text[8:].strip(), head[2]))
            head, diff = None, []
        elif text[0] in "-+":
            diff.append(f"{text[0]} {' '.join(text[1:].split())}")
        elif "::" in text and head is None:
            file, _, function = text.partition("::")
            head = (file.strip(), function.strip(), number)
        else:
            raise ValueError(f"{path}:{number}: expected 'file::function', '-'/'+' lines or 'because: reason'")
    if head is not None:
        raise ValueError(f"{path}:{head[2]}: the entry has no 'because: reason' line")
    return entries


def prepare(module: Module, scratch: Path) -> None:
    """A fresh copy of the package, tests and configuration with mutmut's settings for `module`."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "pytest_tinyaccel", "tests", "conftest.py", "pyproject.toml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for rel in listed:
        src = REPO / rel
        if src.is_file():
            (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, scratch / rel)
    settings = {
        "source_paths": ["pytest_tinyaccel"],
        "only_mutate": [module.file],
        "also_copy": ["conftest.py"],
        "pytest_add_cli_args_test_selection": module.tests,
        # unit tests need none of the plugins; pytest's unraisable-exception check runs gc.collect twice per
        # session, most of a mutant's time in a process holding ONNX Runtime
        "pytest_add_cli_args": [
            *("-p", "no:cacheprovider", "-p", "no:unraisableexception", "-p", "no:tinyaccel"),
            *("-p", "no:benchmark", "-p", "no:html", "-p", "no:metadata", "-p", "no:xdist"),
        ],
    }
    with (scratch / "pyproject.toml").open("a", encoding="utf-8") as f:
        f.write("\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
    # The tests find the repository's data beside themselves (mutants/) and ../shared beside the checkout.
    (scratch / "mutants").mkdir()
    for name in ("models", "golden"):
        (scratch / "mutants" / name).symlink_to(REPO / name)
    if (REPO.parent / "shared").is_dir():
        (scratch / "shared").symlink_to(REPO.parent / "shared")


def run_module(module: Module, scratch: Path, jobs: int, equivalent: list[Equivalent], again: bool = True) -> Result:
    """mutmut on `module` in `scratch` (with `again` False: the results of the last run there, re-read)."""
    start = time.monotonic()
    if again:
        mutate(module, scratch, jobs)
    found = scratch / "mutants" / (module.file + ".meta")
    if not found.is_file():
        raise SystemExit(f"no results of an earlier run of {module.name} in {scratch}: run it without --no-run")
    meta = json.loads(found.read_text())["exit_code_by_key"]
    chosen = {k: v for k, v in meta.items() if any(fnmatch.fnmatch(k, p) for p in module.patterns())}
    result = Result(module)
    for code in chosen.values():
        status = STATUS.get(code, "not checked" if code is None else "suspicious")
        result.counts[status] = result.counts.get(status, 0) + 1
    alive = sorted((k for k, v in chosen.items() if STATUS.get(v) not in DETECTED), key=_natural)
    diffs = mutant_diffs(scratch, module, alive)
    for key in alive:
        lines = changed_lines(diffs[key])
        func = function_of(key)
        match = next((e for e in equivalent if (e.file, e.function, e.diff) == (module.file, func, lines)), None)
        result.survivors.append((key, STATUS.get(chosen[key], "suspicious"), lines, match))
    used = {id(eq) for *_, eq in result.survivors if eq is not None}
    mine = [
        e for e in equivalent if e.file == module.file and any(fnmatch.fnmatch(e.function, f) for f in module.functions)
    ]
    result.stale = [e for e in mine if id(e) not in used]
    result.seconds = time.monotonic() - start
    return result


def mutate(module: Module, scratch: Path, jobs: int) -> None:
    prepare(module, scratch)
    log = scratch / "mutmut.log"
    with log.open("w") as out:
        rc = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *module.patterns()],
            cwd=scratch,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TINYACCEL_MUTATION": "1"},  # tests/conftest.py: the mutation profile
        ).returncode
    if rc != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise SystemExit(f"mutmut failed on {module.name} (exit {rc}); the end of {log}:\n{tail}")


def _natural(key: str) -> tuple[str, int]:
    head, _, n = key.rpartition("__mutmut_")
    return head, int(n)


def mutant_diffs(scratch: Path, module: Module, names: list[str]) -> dict[str, str]:
    """mutmut's diff of each mutant (its own reader, in the scratch folder it ran in)."""
    if not names:
        return {}
    code = (
        "import json, sys\n"
        "from mutmut.mutation.diff_apply import get_diff_for_mutant\n"
        "names = json.loads(sys.stdin.read())\n"
        f"print(json.dumps({{n: get_diff_for_mutant(n, path={module.file!r}) for n in names}}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=scratch, input=json.dumps(names), capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def report(result: Result, threshold: float) -> str:
    m, c = result.module, result.counts
    total = sum(c.values())
    counts = ", ".join(f"{n} {s}" for s, n in sorted(c.items()))
    verdict = "ok" if result.score >= threshold else f"BELOW {threshold:g}%"
    lines = [
        f"{m.name} ({m.file}; tests: {' '.join(m.tests)})",
        f"  {total} mutants: {counts}; {result.equivalent} listed equivalent",
        f"  score {result.score:.1f}% (detected / (mutants - equivalent)) {verdict}; {result.seconds:.0f} s",
    ]
    for key, status, diff, eq in result.survivors:
        mark = f"equivalent ({EQUIVALENT.name}:{eq.line}): {eq.reason}" if eq else "NOT LISTED"
        lines.append(f"  {status}: {key}  [{mark}]")
        lines.extend(f"      {d}" for d in diff)
    for eq in result.stale:
        lines.append(f"  stale entry {EQUIVALENT.name}:{eq.line} ({eq.function}): no surviving mutant matches it")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help="modules of modules.toml (default: all)")
    parser.add_argument("--ci", action="store_true", help="the subset meant for CI (modules.toml: ci)")
    parser.add_argument("--no-run", action="store_true", help="report the last run's results again (equivalent.txt)")
    jobs = int(os.environ.get("TINYACCEL_MUTATION_JOBS", "2"))
    parser.add_argument("--jobs", type=int, default=jobs, help="mutants run at once (%(default)s)")
    checkout = hashlib.sha256(str(REPO).encode()).hexdigest()[:8]  # two checkouts never share a scratch folder
    default = Path(os.environ.get("TMPDIR", "/tmp")) / f"tinyaccel-mutation-{checkout}"
    scratch = os.environ.get("TINYACCEL_MUTATION_DIR") or default
    parser.add_argument("--scratch", type=Path, default=Path(scratch), help="where mutmut works (%(default)s)")
    args = parser.parse_args(argv)
    modules, threshold, ci = load_modules()
    names = ci if args.ci else (args.modules or list(modules))
    unknown = [n for n in names if n not in modules]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(modules)}")
    equivalent = load_equivalent()
    failed, start = [], time.monotonic()
    for name in names:
        result = run_module(modules[name], args.scratch / name, args.jobs, equivalent, again=not args.no_run)
        print(report(result, threshold), flush=True)
        if result.score < threshold:
            failed.append(name)
    print(f"mutation testing: {len(names)} module(s) in {time.monotonic() - start:.0f} s", end="")
    print(f"; below {threshold:g}%: {', '.join(failed)}" if failed else f"; every score >= {threshold:g}%")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
