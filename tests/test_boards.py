"""The `dut` target against simulated boards speaking the MLPerf Tiny protocol on pseudo-terminals:
the bundled models on a pool of two boards under `-n 2` and on a loopback Dask cluster with no
overlap on a board, outputs and accuracy equal to the emulator's, and each fault a board can
have (absent, slow, garbage, silence, reset, unplugged) a skip or a clear failure, the run going on."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from boards import LEASES_CONFTEST, Boards, SimBoard, SimBoards, assert_exclusive, copy_model, lease_records
from helpers import Project

from pytest_tinyaccel.leases import lease

pytest.importorskip("serial", reason="the board extra is not installed (pip install -e '.[board]')")
pytest.importorskip("filelock", reason="the board extra is not installed (pip install -e '.[board]')")

BUNDLED = ["ic", "kws", "ad"]
SAMPLES = ("--tinyaccel-samples", "12", "-k", "not accuracy")  # accuracy: test_outputs_and_accuracy_...


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated boards' int8 models, made once."""
    return tmp_path_factory.mktemp("simboard-cache")


@pytest.fixture
def boards(project: Project, cache: Path) -> Iterator[Boards]:
    sims = Boards(project, cache)
    try:
        yield sims
    finally:
        sims.stop()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Iterator[list[SimBoard]]:
    """Two simulated boards carrying the bundled models, shared by the tests of this module."""
    sims = SimBoards(tmp_path_factory.mktemp("pool"), cache)
    try:
        started = [sims.start(label, BUNDLED) for label in ("sim-a", "sim-b")]
        sims.wait()
        yield started
    finally:
        sims.stop()


def _pool_of_two(project: Project, boards: Boards, pool: list[SimBoard]) -> list[SimBoard]:
    """The project's models on the pool; the boards' logs start empty."""
    for model in BUNDLED:
        project.add_model(model)
    for board in pool:
        board.log.unlink(missing_ok=True)
        boards.configure(board.label, str(board.link), BUNDLED)
    boards.write_pyproject()
    project.pytester.makeconftest(LEASES_CONFTEST)
    return pool


def test_pool_of_two_boards_under_xdist(project: Project, boards: Boards, pool: list[SimBoard]) -> None:
    started = _pool_of_two(project, boards, pool)
    result = project.pytester.runpytest_subprocess("-n", "2", "-m", "dut", *SAMPLES, "--tinyaccel-report=r.json", "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes["passed"] == 3 + 2, result.stdout.str()
    result.stdout.fnmatch_lines(["*SKIPPED*a board runs the model's int8 version (its golden is the int8 golden)*"])
    records = lease_records(project)
    assert {r["board"] for r in records} <= {"sim-a", "sim-b"} and not any(r["retry"] for r in records)
    assert_exclusive(records, started)
    rows = {row["model"]: row for row in json.loads((project.path / "r.json").read_text())["rows"]}
    assert sorted(rows) == sorted(BUNDLED)
    for row in rows.values():  # which board ran the case, its name% answer, the device's clock and the host's
        extra = row["perf"]["extra"]
        assert f"{row['model']} int8 on {extra['board']} (dut-[{extra['board']}])" in row["perf"]["simulator"]
        assert extra["device_us"] > 0 and extra["iterations"] == 10 and extra["host_latency_ns"] is not None
        assert row["perf"]["latency_ns"] == pytest.approx(extra["device_us"] * 1e3 / 10)


CLUSTER = """
from distributed import LocalCluster

with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
    print(cluster.scheduler_address, flush=True)
    input()  # until the test closes stdin
"""


def test_pool_of_two_boards_on_a_dask_cluster(project: Project, boards: Boards, pool: list[SimBoard]) -> None:
    # distributed is not imported here: after that, this process could not run pytest in-process any more
    if importlib.util.find_spec("distributed") is None:
        pytest.skip("the dask extra is not installed (pip install -e '.[dask]')")
    started = _pool_of_two(project, boards, pool)
    cluster = subprocess.Popen(  # a LocalCluster of worker processes, in a process of its own
        [sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert cluster.stdout is not None
        address = cluster.stdout.readline().strip().removeprefix("tcp://")
        result = project.pytester.runpytest_subprocess(
            "-m", "dut", *SAMPLES, f"--tinyaccel-executor=dask://{address}", "-p", "no:cacheprovider"
        )
    finally:
        cluster.communicate("\n", timeout=60)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes["passed"] == 3 + 2, result.stdout.str()
    result.stdout.fnmatch_lines([f"tinyaccel: builds and runs on the Dask scheduler at {address} (2 workers)*"])
    records = lease_records(project)
    assert {r["lease"]["kind"] for r in records} == {"Dask lock + file lock"}
    assert {r["pid"] for r in records}.isdisjoint({os.getpid()})  # the cases ran in the cluster's workers
    assert_exclusive(records, started)


OUTPUTS_TEST = """
import numpy as np
from pathlib import Path

def test_outputs(tinyaccel):
    out = tinyaccel.outcome
    np.save(Path(__file__).parent / f"{tinyaccel.case.id}.npy", np.stack(list(out.float_outputs.values())))
"""


def test_outputs_and_accuracy_equal_the_emulator(project: Project, boards: Boards, pool: list[SimBoard]) -> None:
    _pool_of_two(project, boards, pool)
    project.pytester.makepyfile(test_outputs=OUTPUTS_TEST)
    args = ("--target", "dut:hw,aie:sw_emu", "--tinyaccel-dtype", "int8", "--tinyaccel-samples", "40")
    # in a process of its own: the emulator's numba types cannot be registered twice in this one
    result = project.pytester.runpytest_subprocess(*args, "--tinyaccel-report=r.json")
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] >= 2 * (3 * 2 + 2) + 2 * 3 and "failed" not in outcomes, result.stdout.str()
    rows = {(r["model"], r["target"]): r for r in json.loads((project.path / "r.json").read_text())["rows"]}
    for model in BUNDLED:
        board_row, emulator_row = rows[model, "dut"], rows[model, "aie"]
        assert board_row["accuracy"] == emulator_row["accuracy"] and board_row["samples"] == 40
        assert board_row["agreement"] == emulator_row["agreement"]
        on_board = np.load(project.path / f"{model}-dut-hw-int8.npy")
        emulated = np.load(project.path / f"{model}-aie-sw_emu-int8.npy")
        np.testing.assert_array_equal(on_board, emulated)  # the int8 levels themselves, bit for bit
        assert board_row["perf"]["extra"]["results"].startswith("int8 levels")


FAULTS = {
    # label: simulated board switches, and what the failure says
    "slow": (["--fault", "slow", "--delay", "4", "--fault-after", "6"], "silent: no complete answer within 1.5 s"),
    "garbage": (["--fault", "garbage", "--fault-after", "6"], "garbage: answered bytes that are not protocol text"),
    "silence": (["--fault", "silence", "--fault-after", "6"], "silent: no complete answer within 1.5 s"),
    "resets": (["--fault", "reset", "--fault-after", "6", "--fault-count", "9"], "rebooted again instead of answering"),
    "unplug": (["--fault", "disconnect", "--fault-after", "6"], "did not come back within 2 s"),
}


def test_every_fault_is_a_clear_failure_and_the_run_goes_on(project: Project, boards: Boards) -> None:
    project.add_model("kws")
    healthy = boards.start("healthy", ["kws"])
    boards.configure("healthy", str(healthy.link), ["kws"])
    faulty = []
    for label, (switches, _) in FAULTS.items():
        copy_model(project, "ic", f"ic_{label}")
        faulty.append(boards.start(label, ["ic"], *switches))
        boards.configure(label, str(faulty[-1].link), [f"ic_{label}"], timeout=1.5)
    for label, switches in {"reset": ["--fault", "reset", "--fault-after", "6"], "replug": ["--replug", "0.3"]}.items():
        copy_model(project, "ic", f"ic_{label}")  # a fault the one retry gets past
        extra = ["--fault", "disconnect", "--fault-after", "6"] if label == "replug" else []
        boards.start(label, ["ic"], *switches, *extra)
        boards.configure(label, str(project.path / f"{label}.port"), [f"ic_{label}"])
    copy_model(project, "ic", "ic_absent")
    boards.configure("absent", str(project.path / "no-such-port"), ["ic_absent"])
    boards.write_pyproject()
    project.pytester.makeconftest(LEASES_CONFTEST)
    result = project.pytester.runpytest_subprocess(
        "-n", "2", "-m", "dut", "--tinyaccel-dtype=int8", "--tinyaccel-samples=12", "-k", "golden", "-rfs"
    )
    output = result.stdout.str()
    assert "Traceback" not in output and "INTERNALERROR" not in output, output
    for label, (_, said) in FAULTS.items():
        board = f"ic_{label}-dut-hw-int8: board {label} on {project.path / (label + '.port')} (dut-[{label}]): at "
        (message,) = [line for line in result.outlines if line.startswith(board)]
        assert said in message and "; the one retry after a reconnect: `" in message, message
    result.stdout.fnmatch_lines(["*SKIPPED*no board carrying ic_absent is connected: absent (*no-such-port not found)"])
    records = {r["model"]: r for r in lease_records(project)}
    assert set(records) == {"kws", "ic_reset", "ic_replug"}  # passed, the two after one retry
    assert records["kws"]["retry"] is None
    assert "reset: rebooted while answering" in records["ic_reset"]["retry"]
    assert "disconnected" in records["ic_replug"]["retry"]
    assert result.parseoutcomes() == {"passed": 3, "failed": len(FAULTS), "skipped": 1}
    for board in faulty:  # every lease was released, the dead boards' too
        with lease([str(Path(board.link).resolve())], 0.5, "test", folder=project.path / "locks") as held:
            assert held.waited_s < 0.5


def test_skips_without_boards(project: Project) -> None:
    project.add_model("ic")
    result = project.run("-m", "dut", "-rs", "--tinyaccel-dtype=int8")
    result.stdout.fnmatch_lines(["*SKIPPED*no board carries ic: name it in a board's `models`*docs/boards.md*"])
    assert result.parseoutcomes() == {"skipped": 3, "deselected": 29}  # golden, accuracy, top5 of ic int8


def test_a_malformed_board_table_names_the_key(project: Project, boards: Boards) -> None:
    project.add_model("ic")
    boards.configure("b", "/dev/ttyACM9", ["ic"], 'input = "hex"\n')
    boards.write_pyproject()
    result = project.run("-m", "dut")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "[tool.tinyaccel.targets.dut]: key 'boards.b.input': 'hex' is not one of" in result.stderr.str()


BOARD_TEST = """
import os
import pytest
from pathlib import Path
from pytest_tinyaccel.leases import LeaseTimeout, lease

def test_on_the_board(tinyaccel, tinyaccel_board):
    assert tinyaccel.outcome.perf.extra["board"] == tinyaccel_board.label == "bench"
    assert tinyaccel_board.name == "dut-[bench]"
    assert "m-model-[ic]" in tinyaccel_board.command("profile")
    with pytest.raises(LeaseTimeout, match="held by test_on_the_board.py::test_on_the_board"):
        with lease([os.path.realpath(tinyaccel_board.port)], 0.2, "probe", folder=Path("locks").resolve()):
            pass
"""


def test_boards_in_a_manifest_and_the_board_fixture(project: Project, boards: Boards) -> None:
    project.add_model("ic")
    board = boards.start("bench", ["ic"])
    project.append_manifest("ic", f'[targets.dut.boards.bench]\nport = "{board.link}"\ntimeout = 4')
    boards.write_pyproject()
    project.pytester.makepyfile(test_on_the_board=BOARD_TEST)
    args = ("-m", "dut", "--tinyaccel-dtype=int8", "--tinyaccel-samples=12", "-k", "golden or board")
    result = project.run(*args)
    assert result.parseoutcomes()["passed"] == 2, result.stdout.str()
    assert len([e for e in board.served() if e["event"] == "infer"]) == 12 + 1  # the samples, then the latency run
    boards.configure("bench", "/dev/ttyACM7", ["kws"])  # the same label on another port in pyproject.toml
    boards.write_pyproject()
    result = project.run("-m", "dut", "--collect-only")
    result.stdout.fnmatch_lines(["*ic/model.toml: key 'targets.dut.boards.bench.port': * use another label*"])


def test_a_case_that_finds_no_free_board_fails_naming_the_holder(project: Project, boards: Boards) -> None:
    project.add_model("ic")
    port = project.path / "busy-board"
    port.write_text("")  # present: the case waits for its lease before it opens the port
    boards.configure("busy", str(port), ["ic"])
    boards.write_pyproject("lease_timeout = 0.5\n")
    with lease([str(port)], 1, "another team's run", folder=project.path / "locks"):
        result = project.run("-m", "dut", "--tinyaccel-dtype=int8", "-k", "golden")
    assert result.parseoutcomes()["failed"] == 1
    said = (
        "ic-dut-hw-int8: no device of the pool became free within 0.5 s (*busy-board: held by another team's run (pid*"
    )
    result.stdout.fnmatch_lines([said])
