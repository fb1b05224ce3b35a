"""The host side of the MLPerf Tiny device-under-test (DUT) serial protocol.

The firmware side is EEMBC's monitor as kept in mlcommons/tiny, `benchmark/api/
internally_implemented.cpp` and `submitter_implemented.h` (docs/boards.md cites the revision):
a command is ASCII text ended by `%`; the board answers with lines ended by `\\r\\n` and closes
every answer with `m-ready`. The commands used here:

    name%                 m-name-dut-[VENDOR]
    profile%              m-profile-[FIRMWARE] and m-model-[MODEL]
    db load N%            m-[Expecting N bytes]          (allocate the input buffer)
    db HEXHEX...%         m-load-done after the N-th byte (31 bytes per command, as EEMBC's runner)
    infer N W%            m-warmup-start-W, m-warmup-done, m-infer-start-N, m-lap-us-T0,
                          m-lap-us-T1, m-infer-done, m-results-[v0,v1,...]

`m-lap-us-T` is the board's own microsecond clock at the start and the end of the N timed
inferences; `e-[...]` is the firmware refusing a command; `m-init-done` is a (re)boot.

`Session` sends commands over a `Link` (the serial port, transport.py) and turns every way a
board can misbehave into a `BoardFault` naming the command: no complete answer in time
(`silent`), bytes that are not the protocol's text (`garbage`), boot lines in the middle of an
answer (`reset`), a port that fails or vanishes (`disconnected`), or an `e-` refusal (`refused`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

TERMINATOR = "%"
READY = "m-ready"
DB_CHUNK = 31
"""Bytes per `db` command: 62 hex digits, within the firmware's 80-character command buffer
(the value EEMBC's runner uses without a power monitor)."""
MAX_LINE = 1 << 20
"""A longer line is not the protocol (an output vector of 100k values prints well under this)."""
CLOCK_WRAP = 1 << 32
"""`m-lap-us` prints an unsigned long: 32 bits on the Cortex-M boards the benchmark targets."""

_NAME = re.compile(r"^m-name-(.+)$")
_PROFILE = re.compile(r"^m-(profile|model)-\[(.*)\]$")
_RESULTS = re.compile(r"^m-results-\[(.*)\]$")
_LAP = re.compile(r"^m-lap-us-(\d+)$")
_BOOT = ("m-init-done", "m-timestamp-mode-")
T = TypeVar("T")


class BoardFault(Exception):
    """A board misbehaved while answering `command`; `kind` says how."""

    def __init__(self, kind: str, command: str, detail: str) -> None:
        self.kind, self.detail = kind, detail
        self.command = command if len(command) <= 24 else command[:21] + "..."
        super().__init__(f"`{self.command}`: {kind}: {detail}")

    @property
    def retryable(self) -> bool:
        """Whether a reconnect may help (a refusal is the firmware's considered answer)."""
        return self.kind != "refused"


class Link(Protocol):
    """A byte stream to the board: the serial port, or anything that behaves like one."""

    def write(self, data: bytes) -> None: ...

    def read(self, timeout: float) -> bytes:
        """What arrived within `timeout` seconds (b"" when nothing did); raises BoardFault
        ("disconnected") when the port fails."""
        ...

    def close(self) -> None: ...


@dataclass
class Inference:
    """One `infer N W` answer: the result vector as printed, the board's clock, the host's view."""

    values: list[str]
    laps_us: tuple[int, int] | None
    host_ns: int | None
    """Host clock between receiving the two `m-lap-us` lines."""
    iterations: int

    @property
    def device_us(self) -> float | None:
        if self.laps_us is None:
            return None
        start, end = self.laps_us
        return float((end - start) % CLOCK_WRAP if end < start else end - start)


def _decode(raw: bytes, command: str) -> str:
    line = raw.rstrip(b"\r").replace(b"\0", b"")
    if any(b < 0x20 or b > 0x7E for b in line if b != 0x09):
        shown = raw[:40].hex(" ")
        raise BoardFault("garbage", command, f"answered bytes that are not protocol text: {shown}")
    return line.decode("ascii")


class Session:
    """Commands and answers over one open link; `handshake` first."""

    def __init__(self, link: Link, timeout: float) -> None:
        self.link, self.timeout = link, timeout
        self._buffer = b""
        self.boot_ok = False

    def _line(self, command: str, deadline: float, limit: float) -> tuple[str, int]:
        """The next line and the host's clock when it arrived."""
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE:
                raise BoardFault("garbage", command, f"sent {len(self._buffer)} bytes without a line end")
            left = deadline - time.monotonic()
            if left <= 0:
                raise BoardFault("silent", command, f"no complete answer within {limit:g} s")
            wait = min(left, 0.1)
            self._buffer += self._io(command, lambda: self.link.read(wait))  # noqa: B023 (called at once)
        raw, _, self._buffer = self._buffer.partition(b"\n")
        return _decode(raw, command), time.monotonic_ns()

    def _io(self, command: str, action: Callable[[], T]) -> T:
        """`action` on the link; its failure is said as a failure of `command`."""
        try:
            return action()
        except BoardFault as exc:
            raise BoardFault(exc.kind, command, exc.detail) from exc

    def _send(self, command: str) -> None:
        self._io(command, lambda: self.link.write((command + TERMINATOR).encode("ascii")))

    def command(
        self, command: str, timeout: float | None = None, expect: re.Pattern[str] | None = None
    ) -> list[tuple[str, int]]:
        """Send `command%`; the answer's lines (with the host clock of each) up to `m-ready`.

        An answer without a line matching `expect` is a late answer to an earlier command (a
        slow board's): it is passed over. While connecting (`boot_ok`), a board that boots
        ignores what it was sent: after its boot banner the command is sent again, once."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        self._send(command)
        lines: list[tuple[str, int]] = []
        boots, resend = 0, False
        while True:
            line, when = self._line(command, deadline, limit)
            if not line:
                continue
            if line.startswith(_BOOT):
                if not self.boot_ok:
                    raise BoardFault("reset", command, f"rebooted while answering (it printed `{line}`)")
                if line == _BOOT[0]:
                    boots, resend = boots + 1, True
                    if boots > 1:
                        raise BoardFault("reset", command, "rebooted again instead of answering")
                lines.clear()  # the boot banner (with its own timestamp), not the answer
                continue
            if line == READY:
                if self.boot_ok and not lines:  # the boot banner's own m-ready, before any answer
                    if resend:
                        self._send(command)
                        resend = False
                    continue
                if expect is not None and not any(expect.match(text) for text, _ in lines):
                    lines.clear()
                    continue
                return lines
            if line.startswith("e-"):
                raise BoardFault("refused", command, f"refused it: {line}")
            lines.append((line, when))

    def drain(self, quiet: float = 0.05) -> None:
        """Forget what the board printed before this connection asked anything."""
        self._buffer = b""
        while self.link.read(quiet):
            pass

    def handshake(self) -> str:
        """Start a connection: forget what the board printed before, then `name` (a board that
        reboots as its port opens is waited for)."""
        self.drain()
        self.boot_ok = True
        try:
            return self.name()
        finally:
            self.boot_ok = False

    def name(self) -> str:
        """The board's `name%` answer, e.g. `dut-[unspecified]`."""
        lines = self.command("name", expect=_NAME)
        return next(m.group(1) for line, _ in lines if (m := _NAME.match(line)))

    def profile(self) -> dict[str, str]:
        """`profile%`: the firmware version and the model it carries (e.g. ic01)."""
        found = {}
        for line, _ in self.command("profile"):
            match = _PROFILE.match(line)
            if match:
                found[match.group(1)] = match.group(2)
        return found

    def load(self, data: bytes) -> None:
        """Fill the board's input buffer: `db load N`, then `db HEX...` in 31-byte chunks."""
        self.command(f"db load {len(data)}")
        done = False
        for start in range(0, len(data), DB_CHUNK):
            answer = self.command("db " + data[start : start + DB_CHUNK].hex())
            done = any(line == "m-load-done" for line, _ in answer)
        if not done:
            raise BoardFault("garbage", "db", f"did not confirm the {len(data)}-byte load with m-load-done")

    def infer(self, iterations: int, warmup: int, timeout: float) -> Inference:
        """`infer N W`: the results line and the two timestamps around the N timed inferences."""
        command = f"infer {iterations} {warmup}"
        lines = self.command(command, timeout)
        laps = [(int(m.group(1)), when) for line, when in lines if (m := _LAP.match(line))]
        results = [m.group(1) for line, _ in lines if (m := _RESULTS.match(line))]
        if not results:
            said = "; ".join(line for line, _ in lines[-3:]) or "nothing"
            raise BoardFault("garbage", command, f"answered without an m-results line (last lines: {said})")
        values = [v.strip() for v in results[-1].split(",") if v.strip()]
        timed = laps[-2:] if len(laps) >= 2 else None
        return Inference(
            values=values,
            laps_us=(timed[0][0], timed[1][0]) if timed else None,
            host_ns=timed[1][1] - timed[0][1] if timed else None,
            iterations=iterations,
        )
