"""The pieces under the `dut` target, without pytest runs: the MLPerf Tiny protocol's host side
against a scripted board, the input buffer and the printed results against ONNX Runtime, and
device leases across processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from helpers import MODELS

from pytest_tinyaccel.leases import LeaseTimeout, lease
from pytest_tinyaccel.targets.dut.codec import BoardIO, Grid, OutputSpec, analyse
from pytest_tinyaccel.targets.dut.protocol import BoardFault, Session

pytest.importorskip("filelock", reason="the board extra is not installed (pip install -e '.[board]')")

BANNER = "m-timestamp-mode-performance\r\nm-lap-us-77\r\nm-init-done\r\nm-ready\r\n"


class Scripted:
    """A board that answers each command with what `answer(command)` returns."""

    def __init__(self, answer: Callable[[str], str | bytes | None]) -> None:
        self.answer, self.sent, self.queue = answer, [], b""

    def write(self, data: bytes) -> None:
        command = data.decode().removesuffix("%")
        self.sent.append(command)
        reply = self.answer(command)
        self.queue += reply.encode() if isinstance(reply, str) else (reply or b"")

    def read(self, timeout: float) -> bytes:
        if not self.queue:
            time.sleep(min(timeout, 0.01))
        data, self.queue = self.queue[:7], self.queue[7:]  # a few bytes at a time, as a UART delivers them
        return data

    def close(self) -> None:
        pass


def _infer(start: int, end: int) -> str:
    return (
        "m-warmup-start-1\r\nm-warmup-done\r\nm-infer-start-10\r\n"
        f"m-lap-us-{start}\r\nm-lap-us-{end}\r\nm-infer-done\r\nm-results-[0.004,0.996]\r\nm-ready\r\n"
    )


def test_infer_gives_results_and_both_clocks_across_a_wrap() -> None:
    board = Scripted(lambda c: _infer(4294967000, 704) if c.startswith("infer") else "m-ready\r\n")
    answer = Session(board, 1.0).infer(10, 1, 1.0)
    assert answer.values == ["0.004", "0.996"] and answer.laps_us == (4294967000, 704)
    assert answer.device_us == 1000.0  # the 32-bit microsecond clock wrapped between the two laps
    assert answer.host_ns is not None and answer.host_ns >= 0
    assert board.sent == ["infer 10 1"]


def test_a_board_booting_on_open_gets_the_command_again() -> None:
    def answer(command: str) -> str:
        return BANNER if len(board.sent) == 1 else "m-name-dut-[unspecified]\r\nm-ready\r\n"

    board = Scripted(answer)
    assert Session(board, 1.0).handshake() == "dut-[unspecified]"
    assert board.sent == ["name", "name"]


def test_load_sends_31_byte_chunks_until_load_done() -> None:
    data = bytes(range(70))

    def answer(command: str) -> str:
        if command.startswith("db load"):
            return "m-[Expecting 70 bytes]\r\nm-ready\r\n"
        return ("m-load-done\r\n" if len(board.sent) == 4 else "") + "m-ready\r\n"

    board = Scripted(answer)
    Session(board, 1.0).load(data)
    assert board.sent == ["db load 70"] + ["db " + data[i : i + 31].hex() for i in (0, 31, 62)]


@pytest.mark.parametrize(
    "reply, kind, said",
    [
        (None, "silent", "no complete answer within 0.2 s"),
        (b"\x8f\x13\xfe\r\nm-ready\r\n", "garbage", "bytes that are not protocol text: 8f 13 fe"),
        (BANNER, "reset", "rebooted while answering (it printed `m-timestamp-mode-performance`)"),
        ("e-[Inference iterations must be >0]\r\nm-ready\r\n", "refused", "e-[Inference iterations must be >0]"),
        ("m-infer-done\r\nm-ready\r\n", "garbage", "without an m-results line (last lines: m-infer-done)"),
    ],
)
def test_each_misbehaviour_is_a_fault_naming_the_command(reply: str | bytes | None, kind: str, said: str) -> None:
    session = Session(Scripted(lambda c: reply), 0.2)
    with pytest.raises(BoardFault) as info:
        session.infer(1, 0, 0.2)
    assert (info.value.kind, info.value.command) == (kind, "infer 1 0")
    assert said in str(info.value) and info.value.retryable == (kind != "refused")


@pytest.fixture(scope="module")
def int8_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from pytest_tinyaccel.models import load_model
    from pytest_tinyaccel.quantize import quantize_model

    folder = tmp_path_factory.mktemp("int8")
    paths = {}
    for name in ("ic", "kws"):
        model = load_model(MODELS / name / "model.toml")
        paths[name] = folder / f"{name}.onnx"
        quantize_model(model.onnx_path, paths[name], model.load_calibration(), model.quantization)
    return paths


@pytest.mark.parametrize("name", ["ic", "kws"])
def test_the_input_buffer_is_what_onnx_runtime_quantizes(int8_models: dict[str, Path], name: str) -> None:
    from pytest_tinyaccel.intermediates import ort_intermediates

    io = analyse(int8_models[name])
    x = np.load(MODELS / name / "X_test.npy", allow_pickle=False)[:200].astype(np.float32)
    ours = np.stack([np.frombuffer(io.encode(s, "quantized"), dtype=np.uint8) for s in x])
    theirs = ort_intermediates(int8_models[name], {io.input_name: x})["input_quantized"]
    np.testing.assert_array_equal(ours, theirs.reshape(len(x), -1))
    assert io.encode(x[0], "float32") == x[0].astype("<f4").tobytes()


def test_printed_results_become_the_int8_levels() -> None:
    grid = Grid(scale=1 / 256, zero_point=0, dtype="uint8")
    io = BoardIO("x", [4], None, [OutputSpec("probs", [3], grid)])
    outputs, exact = io.decode(["0.004", "0.992", "0.000"])  # %0.3f of 1/256, 254/256, 0
    assert exact and outputs["probs"].tolist() == [1 / 256, 254 / 256, 0.0]
    outputs, exact = io.decode(["0.006", "0.992", "0.000"])  # 0.006 is no level's rounding
    assert not exact and outputs["probs"][0] == np.float32(0.006)
    fine = BoardIO("x", [4], None, [OutputSpec("y", [1], Grid(0.0004, 0, "uint8"))])
    assert fine.decode(["0.002"]) == ({"y": pytest.approx(np.array([0.002], np.float32))}, False)  # finer than %0.3f
    with pytest.raises(ValueError, match="printed 2 result values; the model has 3"):
        io.decode(["0.1", "0.2"])


def _hold(key: str, folder: str, seconds: float, log: str) -> None:
    for _ in range(4):
        with lease([key], 30, f"pid {os.getpid()}", folder=Path(folder)) as held:
            with open(log, "a") as handle:
                handle.write(f"{held.acquired} {time.time() + seconds}\n")
            time.sleep(seconds)


def test_one_holder_at_a_time_across_processes(tmp_path: Path) -> None:
    log = tmp_path / "held.txt"
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_hold, args=("board", str(tmp_path), 0.05, str(log))) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    spans = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
    assert len(spans) == 12 and all(end <= start for (_, end), (start, _) in pairwise(spans))


def test_a_pool_hands_out_the_free_device_and_names_holders_on_timeout(tmp_path: Path) -> None:
    with lease(["a", "b"], 1, "first case", folder=tmp_path) as first:
        with lease(["a", "b"], 1, "second case", folder=tmp_path) as second:
            assert (first.key, second.key) == ("a", "b") and first.kind == "file lock"
            with pytest.raises(LeaseTimeout, match=r"within 0.2 s \(a: held by first case \(pid .*b: held by second"):
                with lease(["a", "b"], 0.2, "third case", folder=tmp_path):
                    pass
    with pytest.raises(RuntimeError):
        with lease(["a"], 1, "failing case", folder=tmp_path):
            raise RuntimeError("the case failed")
    with lease(["a"], 0, "next case", folder=tmp_path) as held:  # released however the block ended
        assert held.key == "a"
    assert held.released is not None and held.released >= held.acquired


def test_a_killed_holder_releases_its_device(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from pytest_tinyaccel.leases import lease\n"
        "with lease(['board'], 30, 'doomed', folder=Path(sys.argv[1])):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LeaseTimeout, match="held by doomed"):
            with lease(["board"], 0.2, "waiting", folder=tmp_path):
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
        with lease(["board"], 10, "after", folder=tmp_path) as held:
            assert held.key == "board"
    finally:
        holder.kill()
        holder.wait(30)
