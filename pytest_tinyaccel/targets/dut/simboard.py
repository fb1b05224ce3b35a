"""A simulated MLPerf Tiny board: the firmware side of the device-under-test protocol on a
pseudo-terminal, for trying the `dut` target before a board arrives and for the tests.

    python -m pytest_tinyaccel.targets.dut.simboard --model models/kws --link /tmp/board-kws

It answers `name`, `profile`, `timestamp`, `db load`/`db HEX`/`db print`, `infer N W` and
`results` as the reference firmware does, computing each inference with the tinyaccel emulator
on the model's int8 version (ONNX Runtime's static quantization of the manifest's model, as
the plugin makes it; or `--model file.onnx`, taken as the int8 model). Its `m-lap-us` clock is
simulated: every inference takes the float model's MACs / `--macs-per-us` microseconds, a
stand-in rate, not a measurement (the host waits that long times `--time-scale`). It carries
one model per input size: the size of the loaded buffer selects the model.

Faults, from the `--fault-after`-th command on: `slow` (every answer `--delay` s late),
`garbage` (random bytes instead of answers), `silence` (no answers), `reset` (reboots instead of
answering, `--fault-count` times), `disconnect` (the port vanishes, as an unplugged board's;
with `--replug S` it comes back S seconds later). `--log FILE` records every inference it served
(JSON lines) and every protocol violation it saw.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import select
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .codec import BoardIO, analyse

FAULTS = ("slow", "garbage", "silence", "reset", "disconnect")
FIRMWARE = "ULPMark for tinyML Firmware V0.0.1"
"""The reference firmware's EE_FW_VERSION, as `profile` prints it."""


@dataclass
class Carried:
    """A model the board runs: its emulator graph and how its buffer is encoded."""

    name: str
    graph: Any
    io: BoardIO
    encoding: str
    macs: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.io.input_shape)) * (4 if self.encoding == "float32" else 1)

    def infer(self, buffer: bytes) -> np.ndarray:
        """The emulator's int8 arithmetic on one sample; the outputs flattened in graph order."""
        if self.encoding == "float32":
            x = np.frombuffer(buffer, dtype="<f4").astype(np.float32)
        else:
            assert self.io.input_grid is not None
            x = self.io.input_grid.dequantize(np.frombuffer(buffer, dtype=self.io.input_grid.dtype))
        outputs = self.graph.run({self.io.input_name: x.reshape([1, *self.io.input_shape])})
        return np.concatenate([np.asarray(outputs[o.name], dtype=np.float64).ravel() for o in self.io.outputs])


def load_carried(source: Path, encoding: str, cache: Path, macs: int | None = None) -> Carried:
    """A model folder (or its model.toml: quantized as the plugin does, kept in `cache`) or an int8
    .onnx file (then `macs`, unless it is a float model)."""
    from ...emulator import Graph

    if source.suffix == ".onnx":
        name, int8, float_model = source.stem, source, source
    else:
        from ...models import load_model

        model = load_model(source if source.suffix == ".toml" else source / "model.toml")
        name, float_model = model.name, model.onnx_path
        int8 = model.int8_onnx_path or _quantized(model, cache)
    carried = Carried(name, Graph.load(int8, qdq="ort"), analyse(int8), encoding, macs or _macs(float_model))
    carried.infer(bytes(carried.nbytes))  # initialized before it answers, as firmware sets up its interpreter
    return carried


def _macs(float_model: Path) -> int:
    from ...costmodel.layergraph import prepare_model

    try:
        graph, _ = prepare_model(float_model)
    except ValueError as exc:
        raise SystemExit(f"simboard: {float_model}: give --macs (the MACs of one inference): {exc}") from exc
    return sum(node.macs for node in graph.nodes)


def _quantized(model: Any, cache: Path) -> Path:
    """The model's int8 version, made once per model, calibration and settings (like the plugin's)."""
    import onnxruntime

    from ...cache import atomic_path, file_sha256
    from ...quantize import quantize_model

    calibration = file_sha256(model.calibration_path) if model.calibration_path else ""
    parts = [model.sha256, calibration, json.dumps(model.quantization, sort_keys=True)]
    key = hashlib.sha256("|".join([*parts, onnxruntime.__version__]).encode()).hexdigest()[:16]
    path = cache / f"{model.name}-{key}.onnx"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            quantize_model(model.onnx_path, tmp, model.load_calibration(), model.quantization)
    return path


class Firmware:
    """The board's state and its answers to each command (lines without their `\\r\\n`)."""

    def __init__(self, name: str, models: list[Carried], args: argparse.Namespace) -> None:
        self.name, self.args = name, args
        self.models = {m.nbytes: m for m in models}
        if len(self.models) != len(models):
            raise SystemExit("simboard: two carried models take inputs of the same size; run one board per model")
        self.clock = args.clock_start % (1 << 32)
        self.buffer = bytearray()
        self.expected = 0
        self.results: np.ndarray | None = None

    def boot(self) -> list[str]:
        """What the firmware prints when it (re)starts: timestamp mode, a timestamp, init done."""
        self.buffer, self.expected, self.results = bytearray(), 0, None
        return ["m-timestamp-mode-performance", self._lap(), "m-init-done", "m-ready"]

    def _lap(self) -> str:
        return f"m-lap-us-{self.clock}"

    def _tick(self, us: float) -> None:
        self.clock = int(self.clock + round(us)) % (1 << 32)

    def handle(self, command: str, log: Any) -> list[str | float]:
        """The answer: lines, and (numbers) the simulated microseconds that pass between them."""
        words = command.split()
        if not words:
            return ["m-ready"]
        head, rest = words[0], words[1:]
        out: Sequence[str | float]
        if head == "name":
            out = [f"m-name-dut-[{self.name}]"]
        elif head == "profile":
            out = [f"m-profile-[{FIRMWARE}]", f"m-model-[{','.join(m.name for m in self.models.values())}]"]
        elif head == "timestamp":
            out = [self._lap()]
        elif head == "db":
            out = self._db(rest, log)
        elif head == "infer":
            out = self._infer(rest, log)
        elif head == "results":
            out = [self._results()]
        else:
            out = [f"e-[Unknown command: {head}]"]
        return [*out, "m-ready"]

    def _db(self, rest: list[str], log: Any) -> list[str]:
        if not rest:
            return ["e-[Command 'db' requires a subcommand]"]
        if rest[0] == "load":
            if self.expected and len(self.buffer) < self.expected:
                log("violation", detail=f"db load while {len(self.buffer)} of {self.expected} bytes were loaded")
            self.expected = int(rest[1]) if len(rest) > 1 and rest[1].isdigit() else 0
            self.buffer = bytearray()
            return [f"m-[Expecting {self.expected} bytes]"] if self.expected else ["e-[Command 'db load' must be >0]"]
        if rest[0] == "print":
            data = bytes(self.buffer)
            return ["m-buffer-" + "-".join(f"{b:02x}" for b in data[i : i + 8]) for i in range(0, len(data), 8)]
        if len(self.buffer) >= self.expected:
            log("violation", detail="db data without a pending db load")
            return ["e-[No db load pending]"]
        try:
            data = bytes.fromhex(rest[0])
        except ValueError:
            return ["e-[Invalid hex digits]"]
        self.buffer += data[: self.expected - len(self.buffer)]
        return ["m-load-done"] if len(self.buffer) == self.expected else []

    def _infer(self, rest: list[str], log: Any) -> list[str | float]:
        n = int(rest[0]) if rest and rest[0].lstrip("-").isdigit() else 1
        w = int(rest[1]) if len(rest) > 1 and rest[1].lstrip("-").isdigit() else 10
        if n <= 0 or w < 0:
            return ["e-[Inference iterations must be >0]" if n <= 0 else "e-[Inference warmup must be >=0]"]
        model = self.models.get(len(self.buffer))
        if model is None or len(self.buffer) != self.expected:
            log("violation", detail=f"infer with {len(self.buffer)} of {self.expected} bytes loaded")
            sizes = ", ".join(f"{m.name} {size} bytes" for size, m in self.models.items())
            return [f"e-[No model takes a {len(self.buffer)}-byte input; carried: {sizes}]"]
        t0 = time.time()
        self.results = model.infer(bytes(self.buffer))
        per_inference = model.macs / self.args.macs_per_us
        self._tick(per_inference * w)
        start = self._lap()
        self._tick(per_inference * n)
        end = self._lap()
        digest = hashlib.sha256(self.buffer).hexdigest()[:16]
        log("infer", model=model.name, iterations=n, warmup=w, input=digest, t0=t0, t1=time.time())
        return [
            f"m-warmup-start-{w}",
            per_inference * w,
            "m-warmup-done",
            f"m-infer-start-{n}",
            start,
            per_inference * n,
            end,
            "m-infer-done",
            self._results(),
        ]

    def _results(self) -> str:
        values = self.results if self.results is not None else np.zeros(1)
        return "m-results-[" + ",".join(f"{v:0.{self.args.decimals}f}" for v in values) + "]"


class Board:
    """The firmware on a pseudo-terminal, with the fault switches."""

    def __init__(self, firmware: Firmware, args: argparse.Namespace) -> None:
        self.firmware, self.args = firmware, args
        self.commands = 0
        self.resets = 0
        self.rng = np.random.default_rng(args.seed)

    def log(self, event: str, **fields: Any) -> None:
        if self.args.log:
            record = {"event": event, "board": self.firmware.name, "time": time.time(), **fields}
            with open(self.args.log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def serve(self) -> str:
        """Serve until stopped ("stopped") or unplugged by the disconnect fault ("unplugged")."""
        import pty
        import tty

        master, slave = pty.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes as a UART carries them
        link = Path(self.args.link) if self.args.link else None
        if link is not None:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(os.ttyname(slave))
        print(json.dumps({"port": str(link or os.ttyname(slave)), "tty": os.ttyname(slave)}), flush=True)
        self._write(master, self.firmware.boot())
        pending = b""
        try:
            while True:
                ready, _, _ = select.select([master], [], [], 0.5)
                if not ready:
                    continue
                pending += os.read(master, 65536)
                while b"%" in pending:
                    raw, _, pending = pending.partition(b"%")
                    if self._command(master, raw.decode("ascii", "replace").strip()) == "unplugged":
                        return "unplugged"
        finally:
            with contextlib.suppress(OSError):
                os.close(master)
            with contextlib.suppress(OSError):
                os.close(slave)
            if link is not None:
                with contextlib.suppress(FileNotFoundError):
                    link.unlink()

    def _command(self, master: int, command: str) -> str | None:
        self.commands += 1
        fault = self.args.fault if self.commands >= self.args.fault_after else None
        if fault in ("silence", "disconnect"):
            self.log("fault", fault=fault, command=command[:40])
            return "unplugged" if fault == "disconnect" else None
        if fault == "reset" and self.resets < self.args.fault_count:
            self.resets += 1
            self.log("fault", fault=fault, command=command[:40])
            self._write(master, self.firmware.boot())
            return None
        if fault == "garbage":
            self.log("fault", fault=fault, command=command[:40])
            os.write(master, self.rng.integers(0, 256, 48, dtype=np.uint8).tobytes() + b"\r\n")
            return None
        answer = self.firmware.handle(command, self.log)
        if fault == "slow":
            time.sleep(self.args.delay)
        self._write(master, answer)
        return None

    def _write(self, master: int, answer: Sequence[str | float]) -> None:
        """Lines as the firmware prints them; the simulated time between them passes (x --time-scale)."""
        for item in answer:
            if isinstance(item, float):
                if self.args.time_scale > 0:
                    time.sleep(item * 1e-6 * self.args.time_scale)
                continue
            data = (item + "\r\n").encode("ascii")
            while data:
                data = data[os.write(master, data) :]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_tinyaccel.targets.dut.simboard", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--model", action="append", required=True, type=Path, help="model folder, model.toml or int8 .onnx (repeatable)"
    )
    parser.add_argument("--name", default="tinyaccel-simulated-board", help="the vendor part of its name%% answer")
    parser.add_argument("--link", help="make this path a link to the board's pseudo-terminal (its stable port)")
    parser.add_argument("--input", choices=("quantized", "float32"), default="quantized", help="buffer encoding")
    parser.add_argument("--decimals", type=int, default=3, help="decimals of printed results (reference: 3)")
    parser.add_argument("--macs-per-us", type=float, default=20.0, help="simulated speed (a stand-in rate)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="wait the simulated time x this (0: no wait)")
    parser.add_argument("--clock-start", type=int, default=0, help="the m-lap-us clock at boot (32-bit)")
    parser.add_argument("--fault", choices=FAULTS, help="misbehave from --fault-after on")
    parser.add_argument("--fault-after", type=int, default=1, help="the first command (1-based) that meets the fault")
    parser.add_argument("--fault-count", type=int, default=1, help="reset: how many times it reboots")
    parser.add_argument("--delay", type=float, default=5.0, help="slow: seconds before each answer")
    parser.add_argument("--replug", type=float, help="disconnect: come back after this many seconds")
    parser.add_argument("--seed", type=int, default=0, help="garbage: random seed")
    parser.add_argument("--log", help="append what it served and every violation it saw here (JSON lines)")
    parser.add_argument("--macs", type=int, help="MACs of one inference (default: counted on the float model)")
    parser.add_argument("--cache", type=Path, help="keep int8 versions of models here (default: a temporary folder)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import tempfile

    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stopped like Ctrl-C: its port link goes too
    with tempfile.TemporaryDirectory(prefix="tinyaccel-simboard-") as tmp:
        models = [load_carried(source, args.input, args.cache or Path(tmp), args.macs) for source in args.model]
        board = Board(Firmware(args.name, models, args), args)
        try:
            while board.serve() == "unplugged" and args.replug is not None:
                time.sleep(args.replug)
                args.fault = None  # plugged back in, healthy
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
