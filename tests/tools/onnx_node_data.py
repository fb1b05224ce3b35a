"""The ONNX backend node-test data (onnx 1.17.0, 1,288 tests), fetched reproducibly into a cache outside git.

onnx wheels from 1.18 on no longer ship `onnx/backend/test/data/node`; 1.17.0 is
the last that does. This tool downloads that one wheel with pip (pinned by its
sha256, never installed: the project runs onnx 1.23), extracts only the node-test
folders into the cache and deletes the wheel:

    python tests/tools/onnx_node_data.py          # fetch if missing, print the folder

The cache is `.tinyaccel-cache/onnx-1.17.0-node/` at the repository root (git
ignores `.tinyaccel-*/`), or the folder named by `TINYACCEL_ONNX_NODE_DATA`.
`tests/test_onnx_backend.py` calls `node_data_dir(fetch=...)`, fetching itself
in CI (`CI=true`) and failing with the command above otherwise.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ONNX_VERSION = "1.17.0"
WHEEL_SHA256 = "4a183c6178be001bf398260e5ac2c927dc43e7746e8638d6c05c20e321f8c949"
"""onnx-1.17.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl: the same file on every host."""
PREFIX = "onnx/backend/test/data/node/"
EXPECTED_TESTS = 1288
ENV = "TINYACCEL_ONNX_NODE_DATA"
REPO = Path(__file__).resolve().parents[2]
FETCH_COMMAND = "python tests/tools/onnx_node_data.py"


class NodeDataMissing(RuntimeError):
    """The node-test data is not in the cache and was not to be fetched."""


def cache_dir() -> Path:
    """Where the extracted node tests live: one folder per test."""
    override = os.environ.get(ENV)
    return Path(override) if override else REPO / ".tinyaccel-cache" / f"onnx-{ONNX_VERSION}-node"


def _complete(folder: Path) -> bool:
    return (folder / "SOURCE").is_file()


def node_data_dir(fetch: bool) -> Path:
    """The folder of node tests; fetched first when missing and `fetch`, else NodeDataMissing says how."""
    folder = cache_dir()
    if _complete(folder):
        return folder
    if not fetch:
        raise NodeDataMissing(
            f"the ONNX backend node-test data (onnx {ONNX_VERSION}) is not in {folder}; fetch it once with "
            f"`{FETCH_COMMAND}` (downloads the onnx {ONNX_VERSION} wheel with pip, keeps only the test data; "
            f"CI=true fetches automatically)"
        )
    return fetch_node_data(folder)


def fetch_node_data(folder: Path) -> Path:
    """Download the pinned wheel, extract the node tests into `folder` atomically (safe across processes)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist workers collect at the same time
        if _complete(folder):
            return folder
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
            wheel = _download(Path(tmp))
            staging = Path(tmp) / "node"
            count = _extract(wheel, staging)
            if count != EXPECTED_TESTS:
                raise RuntimeError(f"{wheel.name} holds {count} node tests, expected {EXPECTED_TESTS}")
            (staging / "SOURCE").write_text(f"{wheel.name} sha256={WHEEL_SHA256}: {PREFIX}\n")
            if folder.exists():
                shutil.rmtree(folder)
            staging.rename(folder)
    return folder


def _download(into: Path) -> Path:
    requirement = into / "requirements.txt"
    requirement.write_text(f"onnx=={ONNX_VERSION} --hash=sha256:{WHEEL_SHA256}\n")
    argv = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--platform",
        "manylinux_2_17_x86_64",
        "--require-hashes",
        "-r",
        str(requirement),
        "-d",
        str(into),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    wheels = sorted(into.glob(f"onnx-{ONNX_VERSION}-*.whl"))
    if done.returncode or not wheels:
        raise RuntimeError(f"pip download of onnx {ONNX_VERSION} failed:\n{done.stdout}\n{done.stderr}")
    return wheels[0]


def _extract(wheel: Path, into: Path) -> int:
    """Write the node-test members of `wheel` under `into`; returns the number of test folders."""
    tests: set[str] = set()
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            if not member.filename.startswith(PREFIX) or member.is_dir():
                continue
            relative = Path(member.filename[len(PREFIX) :])
            if relative.is_absolute() or ".." in relative.parts:
                raise RuntimeError(f"{wheel.name}: unsafe member {member.filename}")
            target = into / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            if len(relative.parts) > 1:
                tests.add(relative.parts[0])
    return len(tests)


if __name__ == "__main__":
    print(node_data_dir(fetch=True))
