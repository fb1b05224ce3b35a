"""The `dut` target: each case leases a board of its pool, runs the test samples through it and
times it with the board's own clock.

A case's run: lease a board carrying the model (pytest_tinyaccel.leases: a file lock, plus a
Dask lock on a cluster), open its port, ask `name` and `profile`, then for every sample load the
input buffer and `infer 1 0`; finally `infer N W` on the first sample for the latency (the
board's `m-lap-us` clock around N inferences, the host's clock beside it). A fault is retried
once, after a reconnect, and the retry is written in the report; a second fault fails the case
naming the board, the command and the sample. The lease is released however the run ends.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ...cases import case_id
from ...config import ConfigError, validate
from ...perf import Perf
from ..base import Build, RunResult, Target, TargetError
from .boards import TARGET_SCHEMA, WHERE, Board, parse_boards, pool
from .codec import BoardIO, analyse
from .protocol import BoardFault, Inference, Session

if TYPE_CHECKING:
    from ...leases import Lease
    from ...models import Model

IO_FILE = "board.json"
PROTOCOL = "MLPerf Tiny device-under-test protocol over serial, latency from the board's m-lap-us clock"
T = TypeVar("T")


def _missing_dependencies() -> str | None:
    """Asked on every run, whatever runs: looked up, not imported (pyserial loads only when a board runs)."""
    if importlib.util.find_spec("filelock") is None or importlib.util.find_spec("serial") is None:
        return "the dut target needs pyserial and filelock: pip install 'pytest-tinyaccel[board]'"
    return None


class BoardRun:
    """One case on one leased board: connect, samples, latency, one retry after a reconnect."""

    def __init__(self, board: Board, io: BoardIO, settings: dict[str, Any]) -> None:
        self.board, self.io, self.settings = board, io, settings
        self.session: Session | None = None
        self.name = "?"
        self.profile: dict[str, str] = {}
        self.retry: str | None = None

    def _connect(self) -> Session:
        from .transport import SerialLink

        session = Session(SerialLink(self.board.port, self.board.baud), self.board.timeout)
        self.session = session
        self.name = session.handshake()
        self.profile = session.profile()
        return session

    def _reconnect(self) -> Session:
        """Open the port again once it is back (a board re-enumerating after a reset or a replug
        may show its old name for a moment, which does not open)."""
        from .transport import wait_for

        self.close()
        wait = self.settings["reconnect_timeout"]
        deadline = time.monotonic() + wait
        while True:
            if not wait_for(self.board.port, deadline - time.monotonic()):
                raise BoardFault("disconnected", "reconnect", f"{self.board.port} did not come back within {wait:g} s")
            try:
                return self._connect()
            except BoardFault as fault:
                if fault.command != "open" or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        if self.session is not None:
            self.session.link.close()
            self.session = None

    def _step(self, action: Callable[[Session], T], where: str) -> T:
        """`action` on the session; after a fault, once per case, reconnect and do it again."""
        try:
            return action(self.session if self.session is not None else self._connect())
        except BoardFault as fault:
            if self.retry is not None or not fault.retryable:
                raise self._failure(fault, where) from fault
            self.retry = f"at {where}, {fault}"
            try:
                return action(self._reconnect())
            except BoardFault as again:
                raise self._failure(again, where) from again

    def _failure(self, fault: BoardFault, where: str) -> TargetError:
        """The case's failure: the board, then what went wrong first and what the retry met."""
        text = f"board {self.board.where()} ({self.name}): "
        if self.retry is None:
            return TargetError(text + f"at {where}, {fault}")
        return TargetError(text + f"{self.retry}; the one retry after a reconnect: {fault}")

    def _sample(self, sample: np.ndarray, iterations: int = 1, warmup: int = 0) -> Callable[[Session], Inference]:
        data = self.io.encode(sample, self.board.input)

        def run(session: Session) -> Inference:
            session.load(data)
            return session.infer(iterations, warmup, self.board.infer_timeout)

        return run

    def run(self, x: np.ndarray) -> tuple[list[Inference], Inference, float]:
        """Every sample's inference, the latency run, and the host's seconds for the samples."""
        try:
            self._step(lambda _: None, "connect")
            started = time.monotonic()
            results = [self._step(self._sample(s), f"sample {i + 1} of {len(x)}") for i, s in enumerate(x)]
            host_s = time.monotonic() - started
            timing = self._sample(x[0], self.settings["latency_iterations"], self.settings["warmup"])
            return results, self._step(timing, "the latency run"), host_s
        finally:
            self.close()


class DutTarget(Target):
    """Boards speaking the MLPerf Tiny device-under-test protocol (docs/boards.md)."""

    name = "dut"
    modes = ("hw",)
    version = "1"

    def __init__(self, **settings: Any) -> None:
        self.settings = validate(settings, TARGET_SCHEMA, WHERE)
        self.boards = parse_boards(self.settings["boards"], WHERE)

    def cache_settings(self, model: Model, dtype: str, mode: str) -> dict[str, Any]:
        return {}  # the build is the model's analysis alone; boards and timeouts change no build

    def availability(self, mode: str) -> str | None:
        return _missing_dependencies()

    def simulator(self, mode: str) -> str:
        return PROTOCOL

    def pool(self, model: Model) -> list[Board]:
        return pool(self.boards, model.target_options(self.name), model.manifest_path, model.name)

    def case_availability(self, model: Model, dtype: str, mode: str) -> str | None:
        if dtype != "int8":
            return f"a board runs the model's int8 version (its golden is the int8 golden), not {dtype}"
        boards = self.pool(model)
        if not boards:
            return (
                f"no board carries {model.name}: name it in a board's `models` ({WHERE} boards table in "
                "pyproject.toml) or add a [targets.dut.boards.<label>] table to "
                f"{model.dir.name}/{model.manifest_path.name} (docs/boards.md)"
            )
        if not any(b.present for b in boards):
            absent = ", ".join(f"{b.label} ({b.port} not found)" for b in boards)
            return f"no board carrying {model.name} is connected: {absent}"
        return None

    def build(self, build: Build) -> None:
        try:
            io = analyse(build.onnx_path)
        except ValueError as exc:
            raise TargetError(f"dut: {build.model.name} cannot go to a board: {exc}") from exc
        (build.dir / IO_FILE).write_text(json.dumps(io.to_dict()))

    @contextlib.contextmanager
    def leased(self, model: Model, holder: str) -> Iterator[tuple[Board, Lease]]:
        """Hold a connected board of `model`'s pool for the `with` block (TargetError when none is
        present, or none becomes free within `lease_timeout`)."""
        from ...leases import LeaseTimeout, lease

        try:
            boards = [b for b in self.pool(model) if b.present]
        except ConfigError as exc:
            raise TargetError(str(exc)) from exc
        if not boards:
            raise TargetError(f"no board carrying {model.name} is connected any more (unplugged since collection)")
        folder = self.settings["lock_dir"]
        try:
            with lease(
                [b.key for b in boards],
                self.settings["lease_timeout"],
                holder,
                folder=Path(folder).expanduser() if folder else None,
            ) as held:
                yield next(b for b in boards if b.key == held.key), held
        except LeaseTimeout as exc:
            raise TargetError(str(exc)) from exc

    def run(self, build: Build, inputs: dict[str, np.ndarray]) -> RunResult:
        io = BoardIO.from_dict(json.loads((build.dir / IO_FILE).read_text()))
        case = case_id(build.model.name, self.name, build.mode, build.dtype)
        xdist = os.environ.get("PYTEST_XDIST_WORKER")
        with self.leased(build.model, f"{case} (xdist {xdist})" if xdist else case) as (board, held):
            on_board = BoardRun(board, io, self.settings)
            try:
                results, latency, host_s = on_board.run(inputs[io.input_name])
                outputs, exact = _outputs(io, results)
            except ValueError as exc:
                raise TargetError(f"board {board.where()} ({on_board.name}): {exc}") from exc
        perf = _perf(build, board, on_board, latency, held.to_dict(), host_s / len(results), exact)
        return RunResult(outputs, perf)


def _outputs(io: BoardIO, results: list[Inference]) -> tuple[dict[str, np.ndarray], bool]:
    decoded = [io.decode(r.values) for r in results]
    outputs = {o.name: np.stack([d[0][o.name] for d in decoded]) for o in io.outputs}
    return outputs, all(d[1] for d in decoded)


def _perf(
    build: Build,
    board: Board,
    run: BoardRun,
    latency: Inference,
    held: dict[str, Any],
    host_s_per_sample: float,
    exact: bool,
) -> Perf:
    device_us = latency.device_us
    n = latency.iterations
    host_ns = latency.host_ns / n if latency.host_ns is not None else None
    parts = [PROTOCOL, f"{build.model.name} {build.dtype} on {board.label} ({run.name})"]
    if host_ns is not None:
        parts[-1] += f", host view {_duration(host_ns)}/inference"
    if device_us is None:
        parts.append(f"{board.label} printed no m-lap-us timestamps (firmware in energy mode?): latency not measured")
    if run.retry is not None:
        parts.append(f"{build.model.name} {build.dtype} retried once after a reconnect: {run.retry}")
    return Perf(
        simulator="; ".join(parts),
        latency_ns=device_us * 1e3 / n if device_us else None,
        throughput=n / (device_us * 1e-6) if device_us else None,
        extra={
            "board": board.label,
            "board_name": run.name,
            "port": board.port,
            "profile": run.profile,
            "lease": held,
            "device_us": device_us,
            "laps_us": list(latency.laps_us) if latency.laps_us else None,
            "iterations": n,
            "warmup": run.settings["warmup"],
            "host_latency_ns": host_ns,
            "host_s_per_sample": host_s_per_sample,
            "results": "int8 levels (printed values on the output grid)" if exact else "as printed",
            "retry": run.retry,
        },
    )


def _duration(ns: float) -> str:
    return f"{ns / 1e6:.3g} ms" if ns >= 1e6 else f"{ns / 1e3:.3g} us"
