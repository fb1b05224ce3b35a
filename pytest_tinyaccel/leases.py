"""Device leases: one holder at a time per device, across processes, xdist workers and Dask workers.

A device (a board on a serial port) is named by a key. `lease(pool, ...)` waits until one
device of the pool is free, holds it for the duration of the `with` block and always releases
it, even when the block raises. Two locks back every lease:

- a file lock (filelock) in a folder every process of the machine shares: xdist workers, a
  local process pool, several pytest runs; the operating system drops it when the holder dies;
- on a Dask worker, in addition, a Dask `Lock` of the cluster's scheduler, so workers on
  different machines reaching the same device (a networked serial port) exclude each other;
  the scheduler lets a dead worker's lock go when its lease times out.

While it holds a device, the holder writes who it is (case, host, pid, since) beside the lock,
so a case that times out waiting names what holds the pool.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path(tempfile.gettempdir()) / "tinyaccel-leases"
"""The lock folder of a machine unless a setting names another (it must be local, not NFS)."""


class LeaseTimeout(Exception):
    """No device of the pool became free in time; the message names who holds them."""


@dataclass
class Lease:
    """A held device: its key, how it is held, and when (wall clock, for the report)."""

    key: str
    kind: str
    waited_s: float
    acquired: float
    released: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "waited_s": round(self.waited_s, 3),
            "acquired": self.acquired,
            "released": self.released,
        }


def _stem(key: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_")[-40:]
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _dask_lock(key: str) -> Any | None:
    """A cluster-wide lock when this code runs inside a Dask worker, else None."""
    distributed = sys.modules.get("distributed")  # a Dask worker has it imported; nothing else needs it
    if distributed is None:
        return None
    try:
        distributed.get_worker()
    except ValueError:  # not in a worker
        return None
    return distributed.Lock(f"tinyaccel-lease:{key}")


class _Slot:
    """The locks of one device, tried without blocking."""

    def __init__(self, key: str, folder: Path) -> None:
        from filelock import FileLock

        self.key = key
        self.path = folder / f"{_stem(key)}.lock"
        self.holder_path = folder / f"{_stem(key)}.holder"
        self.file = FileLock(self.path, thread_local=False)
        self.dask = _dask_lock(key)

    @property
    def kind(self) -> str:
        return "Dask lock + file lock" if self.dask is not None else "file lock"

    def try_acquire(self) -> bool:
        from filelock import Timeout

        if self.dask is not None and not self.dask.acquire(blocking=False):
            return False
        try:
            self.file.acquire(blocking=False)
        except Timeout:
            if self.dask is not None:
                self.dask.release()
            return False
        return True

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.holder_path.unlink()
        try:
            self.file.release()
        finally:
            if self.dask is not None:
                self.dask.release()

    def write_holder(self, holder: str) -> None:
        info = {"holder": holder, "host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        with contextlib.suppress(OSError):
            self.holder_path.write_text(json.dumps(info))

    def describe_holder(self) -> str:
        try:
            info = json.loads(self.holder_path.read_text())
            since = time.strftime("%H:%M:%S", time.localtime(info["since"]))
            return f"{info['holder']} (pid {info['pid']} on {info['host']}, since {since})"
        except (OSError, ValueError, KeyError, TypeError):
            return "a process that did not say who it is"


@contextlib.contextmanager
def lease(
    keys: Sequence[str], timeout: float, holder: str, folder: Path | None = None, poll: float = 0.05
) -> Iterator[Lease]:
    """Hold one free device of `keys` (tried in order) for the `with` block; wait at most `timeout`
    seconds for one (LeaseTimeout names the holders). `holder` says who waits (a case id)."""
    if not keys:
        raise ValueError("a lease needs at least one device key")
    folder = folder or DEFAULT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    slots = [_Slot(key, folder) for key in keys]
    start = time.monotonic()
    chosen = None
    while chosen is None:
        chosen = next((slot for slot in slots if slot.try_acquire()), None)
        if chosen is None:
            if time.monotonic() - start >= timeout:
                holders = "; ".join(f"{slot.key}: held by {slot.describe_holder()}" for slot in slots)
                raise LeaseTimeout(f"no device of the pool became free within {timeout:g} s ({holders})")
            time.sleep(poll * (1 + random.random()))  # jitter: waiting processes do not poll in step
    chosen.write_holder(holder)
    granted = Lease(chosen.key, chosen.kind, time.monotonic() - start, time.time())
    try:
        yield granted
    finally:
        granted.released = time.time()
        chosen.release()
