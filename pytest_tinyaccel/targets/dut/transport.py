"""The serial port under the protocol: pyserial, loaded only when a board is used.

A port is a device path (`/dev/ttyACM0`, a `/dev/serial/by-id/...` link) or any pyserial URL
(`rfc2217://host:port`, `socket://host:port` for a board on another machine). A port that
fails, or vanishes (the board unplugged), is a `BoardFault("disconnected")`.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..base import TargetError
from .protocol import BoardFault


def is_url(port: str) -> bool:
    return "://" in port


def present(port: str) -> bool:
    """Whether the port can be opened at all: a device path that exists (a URL is assumed to)."""
    return is_url(port) or os.path.exists(port)


def _serial() -> Any:
    try:
        import serial
    except ImportError as exc:
        raise TargetError("the dut target needs pyserial and filelock: pip install 'pytest-tinyaccel[board]'") from exc
    return serial


class SerialLink:
    """An open serial port (a `protocol.Link`)."""

    def __init__(self, port: str, baud: int) -> None:
        serial = _serial()
        self.port = port
        try:
            if is_url(port):
                self._serial = serial.serial_for_url(port, baudrate=baud, timeout=0)
            else:  # exclusive: a terminal monitor holding the port is an error, not a shared stream
                self._serial = serial.Serial(port, baudrate=baud, timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise BoardFault("disconnected", "open", f"cannot open {port}: {exc}") from exc

    def write(self, data: bytes) -> None:
        try:
            self._serial.write(data)
            self._serial.flush()
        except Exception as exc:  # SerialException, OSError, termios.error: the port is gone either way
            raise BoardFault("disconnected", "write", f"the port failed: {exc}") from exc

    def read(self, timeout: float) -> bytes:
        try:
            self._serial.timeout = max(timeout, 0.0)
            first = self._serial.read(1)
            if not first:
                return b""
            waiting = self._serial.in_waiting
            return first + (self._serial.read(waiting) if waiting else b"")
        except Exception as exc:  # as in write
            raise BoardFault("disconnected", "read", f"the port failed: {exc}") from exc

    def close(self) -> None:
        try:
            self._serial.close()
        except Exception:  # noqa: BLE001 (already gone: nothing to release)
            pass


def wait_for(port: str, timeout: float) -> bool:
    """Whether the port is (back) within `timeout` seconds: a board re-enumerating after a reset."""
    deadline = time.monotonic() + timeout
    while not present(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
