"""Where builds and runs happen: in the pytest process (`local`, the default), in a pool of
local processes (`processes`, `processes:N`), or on an existing Dask cluster
(`dask://HOST:PORT`, the real `distributed` scheduler and workers).

With a pool or a cluster the session submits every selected case at once after
collection (prefetch), so the slow simulations run in parallel while pytest walks
the tests; each test then waits for its own case. The work unit is
`runner.run_case`: build, run and score one case, return its `Outcome`; errors
travel back as the same exceptions, so a failure, a crash or a lost worker is
that case's failed test and never stops the others. Pytest stays the one place
that checks and reports.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .config import ConfigError
from .process import share_cores


class Future(Protocol):
    def result(self, timeout: float | None = None) -> Any: ...

    def cancel(self) -> Any: ...


class Executor:
    """Submits work somewhere else; `describe` says where (report header)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Cancel what has not started and release the workers."""


class ProcessExecutor(Executor):
    """A pool of local processes (fork), for cases that are slow single-threaded processes."""

    def __init__(self, workers: int) -> None:
        import concurrent.futures  # only with a pool: not a cost of every run
        import multiprocessing

        self.workers = workers
        context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=share_cores, initargs=(workers,)
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        return self._pool.submit(fn, *args)

    def describe(self) -> str:
        return f"a pool of {self.workers} local processes"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class DaskExecutor(Executor):
    """An existing Dask distributed scheduler; its workers need the project installed and the
    build cache folder at the same path (docs/running.md, "On a Dask cluster").

    Targets defined in a conftest.py cannot be imported on a worker (the conftest is not on its
    path): each task travels as cloudpickle bytes with those modules pickled by value."""

    def __init__(self, address: str, targets: Sequence[object] = (), timeout: float = 30.0) -> None:
        try:
            from distributed import Client
        except ImportError as exc:
            raise ConfigError(
                "--tinyaccel-executor", address, "needs the dask extra: pip install 'pytest-tinyaccel[dask]'"
            ) from exc
        self.address = address
        try:
            self._client = Client(address, timeout=timeout, set_as_default=False)
        except OSError as exc:
            raise ConfigError(
                "--tinyaccel-executor", f"dask://{address}", f"no Dask scheduler answers there ({exc})"
            ) from exc
        ship_by_value(targets)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        import cloudpickle  # a dependency of distributed

        # Dask pickles arguments by reference when it can; a conftest's class must go by value.
        payload = cloudpickle.dumps((fn, args))
        # pure=False: the same case submitted twice is run twice, never silently deduplicated.
        return self._client.submit(call_pickled, payload, pure=False)

    def describe(self) -> str:
        workers = len(self._client.scheduler_info().get("workers", {}))
        return f"the Dask scheduler at {self.address} ({workers} workers)"

    def close(self) -> None:
        self._client.close()


class Remote:
    """The cases submitted to an executor, by id. `result` waits for one; a crash or a lost
    worker comes back as a TargetError naming where it ran, user errors as themselves."""

    def __init__(self, executor: Executor, submit: Callable[[Any], Future]) -> None:
        self.executor, self._submit = executor, submit
        self._futures: dict[str, Future] = {}

    def prefetch(self, cases: list[Any]) -> None:
        for case in cases:
            if case.id not in self._futures:
                self._futures[case.id] = self._submit(case)

    def result(self, case: Any) -> Any:
        from .runner import USER_ERRORS
        from .targets.base import TargetError

        future = self._futures.pop(case.id, None) or self._submit(case)
        try:
            return future.result()
        except USER_ERRORS:
            raise
        except Exception as exc:
            raise TargetError(
                f"{self.executor.describe()} could not run this case: {type(exc).__name__}: {exc}"
            ) from exc

    def close(self) -> None:
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()
        self.executor.close()


def make_executor(spec: str, targets: Sequence[object] = ()) -> Executor | None:
    """`local` -> None; `processes[:N]` -> ProcessExecutor; `dask://HOST:PORT` -> DaskExecutor
    (which ships the `targets` defined in conftest files to its workers by value). The spec was
    checked when the option was parsed (options.executor)."""
    if spec == "local":
        return None
    if spec.startswith("processes"):
        return ProcessExecutor(int(spec.partition(":")[2] or os.cpu_count() or 1))
    return DaskExecutor(spec.removeprefix("dask://"), targets)


def ship_by_value(targets: Sequence[object]) -> list[str]:
    """Register the conftest modules that define `targets` (or their base classes) with cloudpickle,
    so their classes are pickled by value; returns the module names."""
    import cloudpickle

    shipped = []
    for target in targets:
        for cls in type(target).__mro__:
            module = sys.modules.get(cls.__module__)
            path = getattr(module, "__file__", None) or ""
            if module is not None and os.path.basename(path) == "conftest.py" and cls.__module__ not in shipped:
                cloudpickle.register_pickle_by_value(module)
                shipped.append(cls.__module__)
    return shipped


def call_pickled(payload: bytes) -> Any:
    """On a Dask worker: unpickle a (function, arguments) task made by `DaskExecutor.submit` and run it."""
    import pickle

    fn, args = pickle.loads(payload)  # our own task, sent through the scheduler the user named
    return fn(*args)
