"""The one process runner (pytest_tinyaccel.process): a hang is killed with its whole process
group, exit status and log tails are reported, a missing program is a clear error, leftovers
of a finished program are killed, and a child dies when the process that started it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import alive

from pytest_tinyaccel.process import StartError, run_process

PY = sys.executable


def _gone(*pids: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(p) for p in pids)


def _wait_for(path: Path, within: float = 20.0) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().endswith("\n"):
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written within {within} s")


def _script(tmp_path: Path, name: str, code: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return str(path)


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


@needs_proc
def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    """A child that ignores SIGTERM and started a grandchild: both are gone after the timeout."""
    pids = tmp_path / "pids.txt"
    script = _script(
        tmp_path,
        "hang.py",
        f"""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only the SIGKILL after the grace period ends it
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print("waiting for input stream", flush=True)
        open({str(pids)!r}, "w").write(f"{{__import__('os').getpid()}} {{grandchild.pid}}\\n")
        time.sleep(600)
    """,
    )
    start = time.monotonic()
    result = run_process([PY, script], tmp_path, None, 2, tmp_path / "out.log", tmp_path / "err.log", kill_grace=1)
    assert time.monotonic() - start < 15
    child, grandchild = map(int, pids.read_text().split())
    assert result.timed_out and not result.ok
    assert result.status() == "timed out after 2 s (its process group was killed)"
    assert result.signal_name == "SIGKILL"  # SIGTERM was ignored
    assert "| waiting for input stream" in result.tails()
    assert _gone(child, grandchild), "a process of the timed-out group survived"


def test_exit_status_and_log_tails_are_reported(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        "fail.py",
        """
        import sys
        for i in range(40):
            print(f"step {i}")
        print("ERROR: deadlock detected on port in_0", file=sys.stderr)
        sys.exit(3)
    """,
    )
    result = run_process([PY, script], tmp_path, None, 60, tmp_path / "out.log", tmp_path / "err.log")
    assert (result.returncode, result.ok, result.timed_out, result.signal_name) == (3, False, False, None)
    assert result.status() == "exited with code 3"
    assert result.argv == [PY, script] and result.cwd == tmp_path and result.seconds > 0
    tails = result.tails()
    assert f"last lines of stderr ({tmp_path / 'err.log'}):\n    | ERROR: deadlock detected on port in_0" in tails
    assert "| step 39" in tails and "| step 25" in tails and "step 24" not in tails  # the last 15 lines of stdout


def test_signal_and_merged_log(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        "crash.py",
        """
        import os, signal, sys
        print("to stdout", flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
    """,
    )
    result = run_process([PY, script], tmp_path, {**os.environ, "X": "1"}, 60, tmp_path / "all.log")
    assert result.signal_name == "SIGSEGV" and result.returncode == -signal.SIGSEGV
    assert result.status() == "was killed by SIGSEGV (exit code -11)"
    assert result.stderr is None and set((tmp_path / "all.log").read_text().split("\n")) >= {"to stdout", "to stderr"}
    assert "last lines of output" in result.tails()


def test_success_with_cwd_and_env(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    result = run_process(
        [PY, "-c", "import os; print(os.getcwd(), os.environ['TOOL_MODE'])"],
        tmp_path,
        {**os.environ, "TOOL_MODE": "hw_emu"},
        60,
        logs / "out.log",
        logs / "err.log",
    )
    assert result.ok and result.status() == "exited with code 0"
    assert (logs / "out.log").read_text().split() == [str(tmp_path), "hw_emu"]


def test_missing_program_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StartError, match=r"cannot start no-such-simulator --batch in .*: .*No such file or directory"):
        run_process(["no-such-simulator", "--batch"], tmp_path, None, 60, tmp_path / "out.log", tmp_path / "err.log")
    with pytest.raises(StartError, match="cannot start .* in .*missing-folder"):
        run_process([PY, "-c", "pass"], tmp_path / "missing-folder", None, 60, tmp_path / "out.log")


@needs_proc
def test_leftovers_of_a_finished_program_are_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids.txt"
    script = _script(
        tmp_path,
        "spawn.py",
        f"""
        import subprocess, sys
        daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(pids)!r}, "w").write(f"{{daemon.pid}}\\n")
    """,
    )
    result = run_process([PY, script], tmp_path, None, 60, tmp_path / "out.log", tmp_path / "err.log")
    assert result.ok
    assert _gone(int(pids.read_text())), "a process the program left behind survived"


@needs_proc
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_child_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """pytest killed with SIGKILL (no chance to clean up): the kernel kills the tool it was running."""
    pidfile = tmp_path / "child.pid"
    child_code = f"import os, time; open({str(pidfile)!r}, 'w').write(f'{{os.getpid()}}\\n'); time.sleep(600)"
    parent_code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from pytest_tinyaccel.process import run_process
        run_process([sys.executable, "-c", {child_code!r}], Path({str(tmp_path)!r}), None, 600,
                    Path({str(tmp_path / "child.log")!r}))
    """)
    # The parent in a session of its own, so that only the death signal can reach the child.
    parent = subprocess.Popen([PY, "-c", parent_code], start_new_session=True)
    child = None
    try:
        child = int(_wait_for(pidfile))
        assert alive(child)
        parent.kill()
        parent.wait(timeout=10)
        assert _gone(child), f"child {child} survived the death of the process that started it"
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if child is not None and alive(child):
            os.kill(child, signal.SIGKILL)
