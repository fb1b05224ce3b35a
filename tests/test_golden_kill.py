"""kill -9 during a golden update, at many instants over the whole update: the golden is
always the old one or the new one, complete, and the next update removes what the killed
ones left behind. Run for the atomic exchange (Linux renameat2) and for the portable
two-rename switch, whose window between the renames the child widens on purpose."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_tinyaccel.goldens import store

ROWS = 400_000  # about 3 MB of golden data, so an update takes long enough to be interrupted
CHILD = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from pytest_tinyaccel.goldens import store

    folder, value, portable = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
    if portable:
        store._exchange = lambda a, b: False
        real_rename = os.rename
        def slow_rename(src, dst):
            real_rename(src, dst)
            if ".old-" in str(dst):  # the golden just moved aside: the window between the two renames
                print("between", flush=True)
            time.sleep(0.05)  # widen the window between the two renames of the switch
        store.os.rename = slow_rename
    meta = {"model": "m", "model_sha256": "a", "ndata": 2, "layer_samples": 0, "onnxruntime": "1", "onnx": "1",
            "dtypes": {"fp32": {"model_sha256": "a"}}}
    data = np.full((2, ROWS), value, np.float32)
    print("start", flush=True)
    store.write(__import__("pathlib").Path(folder), meta, data, {"fp32": {"y": data, "z": data * 2}})
    print("done", flush=True)
    """
).replace("ROWS", str(ROWS))


def _update(folder: Path, value: float, portable: bool) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(folder), str(value), "1" if portable else "0"],
        stdout=subprocess.PIPE,
        text=True,
    )


def _value(folder: Path) -> float:
    """The one value the complete golden holds (it must be complete and uniform)."""
    golden = store.load(folder)
    values = {
        float(golden.inputs.flat[0]),
        float(golden.outputs["fp32"]["y"].flat[-1]),
        float(golden.outputs["fp32"]["z"].flat[0]) / 2,
    }
    assert len(values) == 1, f"a mixed golden: {values}"
    return values.pop()


@pytest.mark.parametrize("portable", [False, True], ids=["exchange", "two-renames"])
def test_kill_at_any_instant_leaves_old_or_new(tmp_path: Path, portable: bool) -> None:
    folder = tmp_path / "m"
    first = _update(folder, 1.0, portable)
    assert first.wait(timeout=60) == 0
    timing = _update(folder, 2.0, portable)
    assert timing.stdout is not None and timing.stdout.readline().strip() == "start"
    start = time.perf_counter()
    assert timing.wait(timeout=60) == 0
    duration = time.perf_counter() - start  # the update itself, from "start" to exit
    assert _value(folder) == 2.0
    seen = set()
    kills = 16
    for i in range(kills):
        old = _value(folder)
        new = 3.0 + i
        child = _update(folder, new, portable)
        assert child.stdout is not None and child.stdout.readline().strip() == "start"
        time.sleep(duration * (i + 0.5) / kills)  # spread over the whole update
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        now = _value(folder)
        assert now in (old, new)
        seen.add("new" if now == new else "old")
    assert {"old", "new"} <= seen, f"kills never landed on both sides of the switch: {seen}"
    if portable:  # and one kill made to land between the renames, whatever the machine's load
        old = _value(folder)
        child = _update(folder, 99.0, portable)
        assert child.stdout is not None
        while child.stdout.readline().strip() != "between":
            pass
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        assert not folder.exists()  # killed between the renames: the golden is aside ...
        assert _value(folder) in (old, 99.0)  # ... and a reader rolls the switch forward, complete
    last = _update(folder, 99.0, portable)
    assert last.wait(timeout=60) == 0
    assert _value(folder) == 99.0
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".m."))
    assert leftovers == [], "the next update must remove what killed updates left behind"
