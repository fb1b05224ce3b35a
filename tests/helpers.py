"""Test helpers: paths of the repository, a throw-away pytester project holding copies
of bundled models, a registrable fake target, and model surgery for fault injection."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
GOLDEN = REPO / "golden"
SHARED = REPO.parent / "shared"

# Fast timing settings so inner runs stay quick; the figures are still measured.
FAST_PYPROJECT = """
[tool.tinyaccel.targets.cpu]
latency_runs = 3
warmup = 1
throughput_runs = 1
throughput_batch = 64
"""

# A target for tests: ONNX Runtime underneath, with modes sw_emu/hw_emu, one of
# them unavailable, and optional output corruption, registered through the hook.
FAKE_TARGET_CONFTEST = """
import numpy as np
from pytest_tinyaccel import Perf, RunResult, Target
from pytest_tinyaccel.runtime import create_session, run_session

PERTURB = {perturb!r}

class FakeTarget(Target):
    name = "fake"
    modes = ("sw_emu", "hw_emu")
    resource_columns = ("Kernels", "Buffers", "Stream", "PLIO", "GMIO")

    def availability(self, mode):
        return "fakesim is not installed (pip install fakesim)" if mode == "hw_emu" else None

    def deterministic(self, mode):
        return False  # its outputs change between runs of a test (PERTURB): always run it

    def run(self, build, inputs):
        outputs = run_session(create_session(build.onnx_path), inputs)
        if PERTURB == "scale":
            outputs = {{k: v * np.float32(1.01) for k, v in outputs.items()}}
        elif PERTURB == "swap":
            outputs = {{k: v[:, ::-1].copy() for k, v in outputs.items()}}
        return RunResult(outputs, Perf(simulator="fakesim", cycles=1000.0, clock_hz=1e9, latency_ns=1000.0,
                                       throughput=1e6,
                                       resources={{"Kernels": 3, "Buffers": 4, "Stream": 5, "PLIO": 1, "GMIO": 2}}))

def pytest_tinyaccel_targets(config):
    return [FakeTarget]
"""


class Project:
    """A pytester project with bundled models copied in; helpers to tweak it."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.path = pytester.path
        pytester.makepyfile(test_suite="from pytest_tinyaccel.suite import *  # noqa\n")
        (self.path / "pyproject.toml").write_text(FAST_PYPROJECT)

    def add_model(self, name: str, golden: bool = True) -> Path:
        shutil.copytree(MODELS / name, self.path / "models" / name)
        if golden and (GOLDEN / name).exists():
            shutil.copytree(GOLDEN / name, self.path / "golden" / name)
        return self.path / "models" / name

    def manifest(self, name: str) -> Path:
        return self.path / "models" / name / "model.toml"

    def edit_manifest(self, name: str, old: str, new: str) -> None:
        path = self.manifest(name)
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, 1))

    def append_manifest(self, name: str, text: str) -> None:
        """Add tables at the end, where they cannot capture the top-level keys."""
        with open(self.manifest(name), "a") as handle:
            handle.write("\n" + text + "\n")

    def fake_target(self, perturb: str | None = None) -> None:
        self.pytester.makeconftest(FAKE_TARGET_CONFTEST.format(perturb=perturb))

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest(*args)


def power_of_two_requant(src: Path, dst: Path, conv_name: str) -> None:
    """Make one QLinearConv's multiplier x_scale*w_scale/y_scale an exact power of two.

    acc * 2^-k then lands exactly on .5 for 1 in 2^k accumulators, so round-half-even and
    round-half-away-from-zero really disagree on this layer.
    """
    model = onnx.load(src)
    inits = {t.name: t for t in model.graph.initializer}
    (node,) = [n for n in model.graph.node if n.name == conv_name]
    xs, ws, ys = (numpy_helper.to_array(inits[node.input[i]]) for i in (1, 4, 6))
    product = np.float32(xs * ws)
    k = int(np.round(np.log2(product / ys)))
    inits[node.input[6]].CopyFrom(numpy_helper.from_array(np.float32(product / np.float32(2.0**k)), node.input[6]))
    onnx.save(model, dst)


def alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by its new parent, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def golden_meta(ndata: int = 1) -> dict:
    """The least golden.json metadata the golden store accepts: one fp32 model, no per-kernel samples."""
    return {
        "model": "m",
        "model_sha256": "a",
        "ndata": ndata,
        "layer_samples": 0,
        "onnxruntime": "1",
        "onnx": "1",
        "dtypes": {"fp32": {"model_sha256": "a"}},
    }


def _same_meta(a, b, where: str = "golden.json") -> None:
    """golden.json contents equal, but for what made each arithmetic's outputs (it names the CPU they ran on),
    file hashes (float files follow the CPU), and float values (Top-5 probabilities) within fp32 rounding."""
    if isinstance(a, dict):
        keys = {k for k in a if k not in ("made_by", "files")}
        assert keys == {k for k in b if k not in ("made_by", "files")}, where
        for key in keys:
            if key == "arithmetics":  # arithmetic -> what made its outputs
                assert sorted(a[key]) == sorted(b[key]), where
            else:
                _same_meta(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_meta(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert abs(a - b) <= 2e-6, where
    else:
        assert a == b, where


def _same_arrays(name: str, a: np.ndarray, b: np.ndarray) -> None:
    """Integer arrays bit for bit; float ones to fp32's last digits, which follow the CPU's kernels."""
    assert a.dtype == b.dtype and a.shape == b.shape, name
    if a.dtype.kind == "f":
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=name)
    else:
        np.testing.assert_array_equal(a, b, err_msg=name)


def assert_same_golden(made: Path, kept: Path) -> None:
    """Two goldens of one model made by the same code, possibly on different CPUs: the same files,
    metadata and arrays (float arrays within fp32 rounding)."""
    import json

    assert sorted(p.name for p in made.iterdir()) == sorted(p.name for p in kept.iterdir())
    _same_meta(*(json.loads((f / "golden.json").read_text()) for f in (made, kept)))
    for path in made.iterdir():
        if path.suffix == ".npy":
            _same_arrays(path.name, np.load(path), np.load(kept / path.name))
        elif path.suffix == ".npz":
            with np.load(path) as x, np.load(kept / path.name) as y:
                assert sorted(x.files) == sorted(y.files)
                for key in x.files:
                    _same_arrays(f"{path.name}:{key}", x[key], y[key])


def require_qemu() -> None:
    """Debian's qemu-user (installed by .ci/run), which runs ONNX Runtime on an emulated AVX2 CPU without VNNI:
    a skip where it is absent, a failure in CI, where the tests must prove both int8 arithmetics."""
    import os

    from pytest_tinyaccel.goldens.arithmetic import QEMU

    if shutil.which(QEMU) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{QEMU} is not installed: .ci/run installs Debian's qemu-user package")
        pytest.skip(f"{QEMU} is not installed (apt-get install qemu-user); CI runs this test")


def load_numba_registries() -> None:
    """Load the modules numba otherwise imports on its first compilation in a process.

    pytester's in-process runs drop every module imported during the run from sys.modules afterwards;
    when a process's first numba compilation happens inside one, numba later imports those registry
    modules again and refuses to register their types twice (KeyError: duplicate registration), which
    breaks every compiled emulator loop for the rest of that xdist worker. conftest.py calls this first.
    """
    import numba

    numba.njit(lambda a: a.sum())(np.zeros(2))  # a first compilation: the target's and the boxing registries
