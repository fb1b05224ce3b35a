"""Builds and runs on a local process pool and on a real Dask cluster (a scheduler and two
workers started here as separate processes on the loopback address, in a folder of their
own, so a project's conftest.py is not importable there): the same reports as a serial
run, the work done in the worker processes, targets defined in a conftest shipped to the
workers, and a worker killed mid-run turns into a retry (Dask's default) or, with no retry allowed,
a clear failure, never a hang."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Project

pytest.importorskip("distributed", reason="the dask extra is not installed (pip install -e '.[dask]')")

WHERE = """
import os, json
from pathlib import Path

def test_where(tinyaccel):
    with open(Path(__file__).parent / "where.jsonl", "a") as handle:
        handle.write(json.dumps({"case": tinyaccel.case.id, "worker": tinyaccel.outcome.worker,
                                 "pytest": os.getpid()}) + "\\n")
"""

SLOW_TARGET = '''
import os, time
from pytest_tinyaccel import Perf, RunResult, Target
from pytest_tinyaccel.runtime import create_session, run_session

class Slow(Target):
    """ONNX Runtime underneath, taking its time like a simulator."""
    name = "slow"
    modes = ("hw_emu",)

    def run(self, build, inputs):
        marker = build.model.dir / "running.pid"
        if not marker.exists():  # the first attempt says where it runs, so the test can kill that worker
            marker.write_text(str(os.getpid()))
        time.sleep(1.0)
        return RunResult(run_session(create_session(build.onnx_path), inputs), Perf(simulator="slow sim", cycles=1.0))

def pytest_tinyaccel_targets(config):
    return [Slow]
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"no Dask scheduler on port {port} after {timeout} s")


@pytest.fixture
def allowed_failures() -> int | None:
    """How often the scheduler reschedules a task whose worker died (None: Dask's default, 3)."""
    return None


@pytest.fixture
def cluster(tmp_path: Path, allowed_failures: int | None) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A Dask scheduler and two single-threaded workers (no nanny: a killed worker stays dead), started
    in their own folder: like workers on other machines, they cannot import the project's conftest."""
    env = dict(os.environ)
    if allowed_failures is not None:
        env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = str(allowed_failures)
    port = _free_port()
    elsewhere = tmp_path / "workers"
    elsewhere.mkdir()
    logs = open(tmp_path / "cluster.log", "wb")  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                ":0",
            ],
            stdout=logs,
            stderr=logs,
            cwd=elsewhere,
            env=env,
        )
    ]
    try:
        _wait_for_port(port, 60)
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "distributed.cli.dask_worker",
                        f"tcp://127.0.0.1:{port}",
                        "--nthreads",
                        "1",
                        "--no-nanny",
                        "--dashboard-address",
                        ":0",
                    ],
                    stdout=logs,
                    stderr=logs,
                    cwd=elsewhere,
                )
            )
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield f"127.0.0.1:{port}", procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=30)
        logs.close()


def _report(path: Path) -> dict:
    """The JSON report without what a wall clock measured or where it ran."""
    data = json.loads(path.read_text())
    data.pop("environment")
    for row in data["rows"]:
        if row["target"] == "cpu":
            row["perf"]["latency_ns"] = row["perf"]["throughput"] = None
        row["from_cache"] = False
    return data


def _suite(project: Project) -> None:
    project.add_model("ic")
    project.pytester.makepyfile(test_where=WHERE)


ARGS = ("--target", "cpu:hw,aie:sw_emu,gemmini:sw_emu", "-p", "no:cacheprovider")


def test_process_pool_reports_match_serial(project: Project) -> None:
    _suite(project)
    serial = project.run(*ARGS, "--tinyaccel-report=serial.json")
    pool = project.run(*ARGS, "--tinyaccel-report=pool.json", "--tinyaccel-executor=processes:2")
    assert serial.parseoutcomes()["passed"] == pool.parseoutcomes()["passed"] > 10
    assert "failed" not in pool.parseoutcomes()
    pool.stdout.fnmatch_lines(
        ["tinyaccel: builds and runs on a pool of 2 local processes, all submitted after collection"]
    )
    assert _report(project.path / "serial.json") == _report(project.path / "pool.json")
    where = [json.loads(line) for line in (project.path / "where.jsonl").read_text().splitlines()]
    pooled = where[len(where) // 2 :]
    assert all(w["worker"].rsplit(":", 1)[1] != str(w["pytest"]) for w in pooled), pooled


def test_dask_cluster_runs_the_work_and_reports_match_serial(project: Project, cluster) -> None:
    address, _ = cluster
    _suite(project)
    serial = project.run(*ARGS, "--tinyaccel-report=serial.json")
    remote = project.run(*ARGS, "--tinyaccel-report=dask.json", f"--tinyaccel-executor=dask://{address}")
    assert serial.parseoutcomes()["passed"] == remote.parseoutcomes()["passed"] > 10
    remote.stdout.fnmatch_lines([f"tinyaccel: builds and runs on the Dask scheduler at {address} (2 workers)*"])
    assert _report(project.path / "serial.json") == _report(project.path / "dask.json")
    where = [json.loads(line) for line in (project.path / "where.jsonl").read_text().splitlines()]
    workers = {w["worker"] for w in where[len(where) // 2 :]}
    assert len(workers) == 2 and all(w.rsplit(":", 1)[1] != str(os.getpid()) for w in workers), workers


@pytest.mark.parametrize("allowed_failures", [None, 0], ids=["retried", "not-retried"])
def test_killed_worker_is_a_retry_or_a_clear_failure(
    project: Project, cluster, tmp_path: Path, allowed_failures: int | None
) -> None:
    """Dask reschedules a task whose worker died: with its default the case runs again on the other
    worker and passes; with no retry allowed the case fails, saying the cluster could not run it."""
    address, procs = cluster
    project.add_model("ic")
    project.pytester.makeconftest(SLOW_TARGET)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "slow",
        "--tinyaccel-dtype=fp32",
        "--tinyaccel-samples=10",
        f"--tinyaccel-executor=dask://{address}",
        "-p",
        "no:cacheprovider",
        "-q",
    ]
    run = subprocess.Popen(cmd, cwd=project.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marker = project.path / "models" / "ic" / "running.pid"
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    victim = int(marker.read_text())
    assert victim in {p.pid for p in procs[1:]}, "the case must run in a cluster worker"
    os.kill(victim, signal.SIGKILL)  # mid-run
    output, _ = run.communicate(timeout=240)
    assert "Traceback" not in output and "INTERNALERROR" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("FAILED")]
    if allowed_failures is None:
        assert run.returncode == 0 and not lines, output
        assert " passed" in output.splitlines()[-1], output
    else:
        assert run.returncode == 1 and lines, output
        failures = [part for part in output.split("\n_") if "[ic-slow-hw_emu-fp32] _" in part.split("\n")[0]]
        assert len(failures) == len(lines), output  # one section per failed check (the summary lines are cut)
        assert all("could not run this case: KilledWorker" in part for part in failures), output


def test_conftest_target_runs_on_workers_that_cannot_import_the_conftest(project: Project, cluster) -> None:
    """The target class lives in the project's conftest.py; the workers run elsewhere and cannot import
    it, so the executor sends the class by value with each task."""
    address, _ = cluster
    project.add_model("ic")
    project.pytester.makeconftest(SLOW_TARGET.replace("time.sleep(1.0)", "pass"))
    from distributed import Client

    with Client(address, timeout=60) as client:
        found = client.run(lambda: __import__("importlib.util").util.find_spec("conftest") is None)
    assert found and all(found.values()), found  # no worker can import a module named conftest
    result = project.run("-m", "slow", "-p", "no:cacheprovider", f"--tinyaccel-executor=dask://{address}")
    result.assert_outcomes(passed=6)
    assert "could not run this case" not in result.stdout.str()
