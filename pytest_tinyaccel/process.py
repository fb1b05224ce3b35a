"""Run one external program (a vendor tool, a target's worker, the LoadGen child) so
that it can neither hang the test session nor outlive it.

The program gets an argv list (never a shell), stdin closed, stdout and stderr
in log files, and a session and process group of its own. On timeout (or when
pytest is interrupted) the whole group gets SIGTERM, then SIGKILL after a grace
period, so the simulators a `make` started die with it; after a normal exit,
whatever the program left running in its group is killed too. On Linux the
program also gets SIGKILL from the kernel when the pytest process that started
it dies (PR_SET_PDEATHSIG), even a pytest killed with no chance to clean up
(what the program started in turn is reached only by the group kill). A
failure message quotes the tail of the logs, because the person reading it
needs the tool's own last words.

One runner for the whole plugin: the command target, the hls4ml target's
worker and the LoadGen worker all start their processes here. And the pytest
process itself: its BLAS threads under pytest-xdist (`share_cores`), and the
garbage collector's view of what was loaded at start-up (`hold_startup_objects`).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TAIL_LINES = 15
PR_SET_PDEATHSIG = 1
"""prctl option of linux/prctl.h: the signal a process gets when its parent dies."""


class StartError(Exception):
    """The program could not be started: not found, not executable, or no such folder."""


@dataclass(frozen=True)
class ProcessResult:
    """How one run of a program ended, and where its logs are."""

    argv: list[str]
    cwd: Path
    returncode: int | None
    timed_out: bool
    seconds: float
    stdout: Path
    stderr: Path | None
    """None: stderr went into the stdout log."""
    timeout: float

    @property
    def ok(self) -> bool:
        return not self.timed_out and self.returncode == 0

    @property
    def signal_name(self) -> str | None:
        """The signal that killed the program (e.g. "SIGSEGV"), None when it exited."""
        code = self.returncode
        if code is None or code >= 0:
            return None
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"

    def status(self) -> str:
        """How it ended, as the end of a sentence: "exited with code 3", "timed out after ..."."""
        if self.timed_out:
            return f"timed out after {self.timeout:g} s (its process group was killed)"
        if self.signal_name:
            return f"was killed by {self.signal_name} (exit code {self.returncode})"
        return f"exited with code {self.returncode}"

    def tails(self, lines: int = TAIL_LINES) -> str:
        """The last `lines` lines of stderr and stdout, indented and marked, for a failure message."""
        logs = [("stderr", self.stderr), ("stdout", self.stdout)] if self.stderr else [("output", self.stdout)]
        parts = []
        for label, path in logs:
            tail = tail_text(path, lines)
            if tail:
                parts.append(f"  last lines of {label} ({path}):\n" + "\n".join(f"    | {line}" for line in tail))
        return "\n".join(parts) if parts else "  (no output on stdout or stderr)"


def tail_text(path: Path, lines: int = TAIL_LINES, width: int = 300) -> list[str]:
    """The last `lines` lines of a log (long lines clipped to `width`); [] when it is missing or blank."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            data = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    out = [line if len(line) <= width else line[: width - 3] + "..." for line in data.splitlines()[-lines:]]
    return out if any(line.strip() for line in out) else []


def run_process(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None,
    timeout: float,
    stdout: Path,
    stderr: Path | None = None,
    kill_grace: float = 3.0,
) -> ProcessResult:
    """Run `argv` in `cwd` with `env` (None: this process's environment), stdout and stderr
    to those files (`stderr` None: into the stdout file), and wait at most `timeout` s.

    On timeout, or when this call is interrupted, the program's process group gets
    SIGTERM, then SIGKILL after `kill_grace` s; after a normal exit, leftovers in the
    group are killed. Raises StartError when the program cannot be started."""
    argv = list(argv)
    for path in (stdout, stderr):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with contextlib.ExitStack() as files:
        out = files.enter_context(open(stdout, "wb"))
        err = files.enter_context(open(stderr, "wb")) if stderr is not None else subprocess.STDOUT
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=_death_signal_request(),
            )
        except OSError as exc:
            raise StartError(f"cannot start {shlex.join(argv)} in {cwd}: {exc}") from exc
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(proc, kill_grace)
        except BaseException:  # KeyboardInterrupt, a pytest timeout: leave nothing running behind
            _stop(proc, kill_grace)
            raise
        finally:
            _signal_group(proc.pid, signal.SIGKILL)
    return ProcessResult(argv, Path(cwd), proc.returncode, timed_out, time.monotonic() - start, stdout, stderr, timeout)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _stop(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the group led by `proc` (started with start_new_session: its pid is the
    group id), SIGKILL after `grace` s, then reap it."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    _signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


# ----- the child dies with its parent --------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the parent: the child only calls it (no imports, no lookups after
    fork). Found among the symbols the process has loaded (dlopen(NULL)), not by ctypes.util.find_library,
    which runs ldconfig in a subprocess on every pytest start."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _death_signal_request() -> Callable[[], None] | None:
    """The `preexec_fn` that makes the child receive SIGKILL when this process dies; None
    where prctl is unavailable. The kernel sends it when the *thread* that started the
    child ends: the plugin starts its processes from the thread that runs the tests."""
    prctl = _prctl()
    if prctl is None:
        return None
    return functools.partial(_die_with_parent, prctl, os.getpid())


def _die_with_parent(prctl: Callable[..., int], parent: int) -> None:
    """Runs in the child between fork and exec."""
    prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


def hold_startup_objects() -> bool:
    """Put every object alive now (the modules, classes and functions of pytest, NumPy, the plugin ...) in the
    garbage collector's permanent generation (gc.freeze) until `release_startup_objects`. Collection and the
    cases allocate enough to make the collector traverse them all again mid-run (tens of ms on every run);
    objects made after this are collected as ever. Not when the collector is off or someone else froze objects
    (releasing would undo theirs). Returns whether it held them."""
    if not gc.isenabled() or gc.get_freeze_count():
        return False
    gc.freeze()
    return True


def release_startup_objects(held: bool) -> None:
    """Give the objects `hold_startup_objects` held back to the collector (before pytest's last collection,
    which then sees the process as it would without the plugin)."""
    if held:
        gc.unfreeze()


def share_cores(workers: int | None) -> None:
    """In one of `workers` pytest-xdist workers (or executor processes), give NumPy's BLAS/OpenMP
    pools this worker's share of the cores, so `-n N` does not run N x cores threads that spin
    while they wait for each other (ONNX Runtime sessions already use one)."""
    if not workers or workers < 2:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=max(1, (os.cpu_count() or 1) // workers))
