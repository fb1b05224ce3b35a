"""Simulated boards for the board tests: `python -m pytest_tinyaccel.targets.dut.simboard`
processes on pseudo-terminals, the pyproject tables that name them, and their logs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from helpers import GOLDEN, MODELS, Project

TIMEOUT = 4.0
"""Seconds a command may take: generous for a loaded 2-core machine, where a healthy answer takes
milliseconds (a board that is meant to fail gets less, to keep the tests short)."""

LEASES_CONFTEST = """
import json, os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def record_lease(request):
    \"\"\"After every test of a case: the lease its process held for it (one line per test).\"\"\"
    view = request.getfixturevalue("tinyaccel") if "tinyaccel" in request.fixturenames else None
    yield
    if view is None:
        return
    try:
        extra = view.outcome.perf.extra
    except pytest.fail.Exception:  # the case failed: it has no outcome
        return
    record = {"case": view.case.id, "model": view.case.model.name, "pid": os.getpid(), "board": extra["board"],
              "lease": extra["lease"], "retry": extra["retry"]}
    with open(Path(__file__).parent / "leases.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\\n")
"""


@dataclass
class SimBoard:
    label: str
    link: Path
    log: Path
    process: subprocess.Popen[bytes]
    models: list[str] = field(default_factory=list)

    def served(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


class SimBoards:
    """Simulated boards started in `folder`; stopped (by pid) at the end."""

    def __init__(self, folder: Path, cache: Path) -> None:
        self.path, self.cache = folder, cache
        self.boards: list[SimBoard] = []

    def start(self, label: str, models: list[str], *args: str) -> SimBoard:
        link, log = self.path / f"{label}.port", self.path / f"{label}.served.jsonl"
        cmd = [sys.executable, "-m", "pytest_tinyaccel.targets.dut.simboard", "--name", label, "--link", str(link)]
        cmd += ["--log", str(log), "--time-scale", "0", "--cache", str(self.cache), *args]
        for model in models:
            cmd += ["--model", str(MODELS / model)]
        out = open(self.path / f"{label}.out", "wb")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        board = SimBoard(label, link, log, process, models)
        self.boards.append(board)
        return board

    def wait(self) -> None:
        """Until every board started has its port (they load their models side by side)."""
        deadline = time.monotonic() + 120
        for board in self.boards:
            while not board.link.exists():
                if board.process.poll() is not None or time.monotonic() > deadline:
                    output = (self.path / f"{board.label}.out").read_text()
                    raise RuntimeError(f"simulated board {board.label} did not start: {output}")
                time.sleep(0.05)

    def stop(self) -> None:
        for board in self.boards:
            if board.process.poll() is None:
                board.process.terminate()
            try:
                board.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                board.process.kill()
                board.process.wait(timeout=10)


class Boards(SimBoards):
    """Simulated boards in a pytester project, and the project's board tables."""

    def __init__(self, project: Project, cache: Path) -> None:
        super().__init__(project.path, cache)
        self.base = (project.path / "pyproject.toml").read_text()
        self.tables: list[str] = []

    def configure(self, label: str, port: str, models: list[str], extra: str = "", timeout: float = TIMEOUT) -> None:
        """A board table in the project's pyproject.toml."""
        self.tables.append(
            f'[tool.tinyaccel.targets.dut.boards.{label}]\nport = "{port}"\nmodels = {json.dumps(models)}\n'
            f"timeout = {timeout}\ninfer_timeout = 15\n{extra}"
        )

    def write_pyproject(self, settings: str = "") -> None:
        """The tables in pyproject.toml; then wait for the boards started here."""
        pyproject = self.path / "pyproject.toml"
        head = f'[tool.tinyaccel.targets.dut]\nlock_dir = "{self.path / "locks"}"\nreconnect_timeout = 2\n{settings}'
        pyproject.write_text(self.base + "\n" + head + "\n" + "\n".join(self.tables))
        self.wait()


def copy_model(project: Project, source: str, name: str) -> None:
    """Another case of the same model under a new name (its own folder and golden)."""
    shutil.copytree(MODELS / source, project.path / "models" / name)
    shutil.copytree(GOLDEN / source, project.path / "golden" / name)


def lease_records(project: Project) -> list[dict]:
    path = project.path / "leases.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_exclusive(records: list[dict], boards: list[SimBoard]) -> None:
    """No two leases of one board overlap in time, and every inference a board served falls in a
    lease of that board held by a case of that inference's model; the boards saw no interleaving."""
    leases: dict[tuple[str, int], dict] = {}
    for record in records:  # one row per test; a case's lease is shared by its tests in a process
        leases.setdefault((record["case"], record["pid"]), record)
    for board in boards:
        held = sorted(
            (r["lease"]["acquired"], r["lease"]["released"], r["model"])
            for r in leases.values()
            if r["board"] == board.label
        )
        for (_, end, _), (start, _, _) in pairwise(held):
            assert end <= start, f"two leases of {board.label} overlap: {held}"
        served = board.served()
        assert not [e for e in served if e["event"] == "violation"], served
        for event in (e for e in served if e["event"] == "infer"):
            owners = [m for start, end, m in held if start <= event["t0"] and event["t1"] <= end]
            assert owners == [event["model"]], (board.label, event, held)
