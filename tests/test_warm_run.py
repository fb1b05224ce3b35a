"""A warm run neither parses an unchanged model nor hashes an unchanged file again: facts read from a file
are kept by the file's identity (cache.remembered), between runs in the cache folder. Every change to the
file must be noticed, even one that keeps its size and modification time; and the int8 probe, kept as
bytes so that no run imports onnx to build it, must be the model onnx builds."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import Project
from onnx import TensorProto, helper, numpy_helper

from pytest_tinyaccel import cache
from pytest_tinyaccel.cache import file_sha256, keep_facts, remembered, save_facts
from pytest_tinyaccel.runtime import PROBE_MODEL

FACTS = Path(".pytest_cache/d/tinyaccel/facts.json")


@pytest.fixture
def facts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A memory of its own for the test, where every file counts as settled (written long enough ago)."""
    monkeypatch.setattr(cache, "_facts", cache._Facts())
    monkeypatch.setattr(cache, "SETTLED_NS", -1)


def _rewrite_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    """New bytes of the same length, with the old modification time put back (only the change time moves)."""
    before = path.stat()
    assert len(data) == before.st_size and data != path.read_bytes()
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _one_weight_changed(path: Path) -> bytes:
    """The model's bytes with one float weight changed (same length)."""
    model = onnx.load(path)
    tensor = next(t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT and t.raw_data)
    array = numpy_helper.to_array(tensor).copy()
    array.flat[0] += np.float32(0.5)
    tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    return model.SerializeToString()


def test_probe_model_is_the_one_onnx_helper_builds() -> None:
    b = numpy_helper.from_array(np.array([[127], [127], [0], [0]], np.int8), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
        "int8_accumulation_probe",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [None, 1])],
        [b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    assert model.SerializeToString() == PROBE_MODEL


def test_remembered_while_unchanged_and_read_again_after_any_write(tmp_path: Path, facts: None) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"one")
    reads: list[bytes] = []

    def read() -> str:
        reads.append(path.read_bytes())
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert remembered("h", path, read) == remembered("h", path, read) == hashlib.sha256(b"one").hexdigest()
    assert len(reads) == 1
    _rewrite_keeping_size_and_mtime(path, b"two")
    assert remembered("h", path, read) == hashlib.sha256(b"two").hexdigest()
    assert len(reads) == 2
    assert remembered("other kind", path, read) and len(reads) == 3  # each kind is its own fact


def test_a_file_written_seconds_ago_is_read_every_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "_facts", cache._Facts())
    path = tmp_path / "fresh.bin"
    path.write_bytes(b"x")
    reads = []
    for _ in range(2):
        remembered("h", path, lambda: reads.append(1) or "value")
    assert len(reads) == 2  # a second write within the file system's clock tick could keep every time stamp


def test_facts_kept_in_the_cache_folder_between_runs(tmp_path: Path, facts: None) -> None:
    data = tmp_path / "X.npy"
    data.write_bytes(b"0123456789")
    keep_facts(tmp_path / "cache")
    digest = file_sha256(data)
    save_facts()
    kept = json.loads((tmp_path / "cache" / "facts.json").read_text())
    assert [entry["value"] for entry in kept.values()] == [digest]

    keep_facts(tmp_path / "cache")  # the next run: what this one remembered, nothing read yet

    def never() -> str:
        raise AssertionError("read again although unchanged")

    assert remembered("sha256", data, never) == digest
    _rewrite_keeping_size_and_mtime(data, b"9876543210")
    assert file_sha256(data) == hashlib.sha256(b"9876543210").hexdigest()
    data.unlink()
    save_facts()  # facts of files that are gone are dropped
    assert json.loads((tmp_path / "cache" / "facts.json").read_text()) == {}


@pytest.mark.parametrize("damage", ["not json", '["a list"]', '{"k": {"id": 1}}'])
def test_a_damaged_facts_file_only_costs_a_read(tmp_path: Path, facts: None, damage: str) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "facts.json").write_text(damage)
    data = tmp_path / "d.bin"
    data.write_bytes(b"abc")
    keep_facts(tmp_path / "cache")
    assert file_sha256(data) == hashlib.sha256(b"abc").hexdigest()


def test_second_run_sees_a_model_edited_in_place(project: Project, facts: None) -> None:
    """The first run keeps the model's hash and graph facts; an edit that keeps the file's size and
    modification time still makes the golden stale in the second."""
    folder = project.add_model("ic")
    first = project.run("-m", "cpu", "-k", "golden and fp32")
    assert first.ret == 0, first.stdout.str()
    kept = json.loads((project.path / FACTS).read_text())
    assert any(key.startswith("sha256") and key.endswith("models/ic/model.onnx") for key in kept)
    assert any(key.startswith("specs") for key in kept)
    path = folder / "model.onnx"
    _rewrite_keeping_size_and_mtime(path, _one_weight_changed(path))
    second = project.run("-m", "cpu", "-k", "golden and fp32")
    assert second.ret == 1
    second.stdout.fnmatch_lines(["*golden *golden/ic is stale: model.onnx changed since the golden was written*"])


def test_second_run_rebuilds_a_cached_build_edited_in_place(project: Project, facts: None) -> None:
    """The build cache's check of its files goes through the kept hashes: a cached file edited in place
    (same size and modification time) is still caught, and the build made again."""
    project.add_model("ic")
    assert project.run("-m", "cpu", "-k", "golden and fp32").ret == 0
    (weights,) = (project.path / ".pytest_cache/d/tinyaccel/builds").glob("ic-cpu-hw-fp32-*/optimized.onnx.data")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    _rewrite_keeping_size_and_mtime(weights, bytes(data))
    result = project.run("-m", "cpu", "-k", "golden and fp32")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["builds: 1 built, 0 reused from the cache (1 rebuilt: *cached files had changed)"])


def test_a_warm_run_imports_no_onnx(project: Project) -> None:
    """Once its files have settled, a run of the cpu golden checks reads every graph fact from the cache
    folder: onnx (30 ms or more of import) is not loaded."""
    project.add_model("ic")
    project.pytester.makeconftest(
        "import sys\n\ndef pytest_unconfigure(config):\n"
        "    (config.rootpath / 'onnx-loaded.txt').write_text(str('onnx' in sys.modules))\n"
    )
    args = ("-m", "cpu", "-k", "golden")
    assert project.pytester.runpytest_subprocess(*args).ret == 0
    time.sleep(cache.SETTLED_NS / 1e9 + 0.1)  # the models copied in and the builds made, settled
    assert project.pytester.runpytest_subprocess(*args).ret == 0  # keeps their facts
    assert project.pytester.runpytest_subprocess(*args).ret == 0
    assert (project.path / "onnx-loaded.txt").read_text() == "False"


GC_CONFTEST = """
import gc
{at_import}

def pytest_unconfigure(config):
    (config.rootpath / "freeze-count-at-end.txt").write_text(str(gc.get_freeze_count()))
"""
GC_TEST = """
import gc

def test_during_the_session():
    (__import__("pathlib").Path("freeze-count-in-test.txt")).write_text(str(gc.get_freeze_count()))
"""


@pytest.mark.parametrize("frozen_before", [False, True])
def test_start_up_objects_held_during_the_session_and_released_at_the_end(
    pytester: pytest.Pytester, frozen_before: bool
) -> None:
    """The objects loaded at start-up are out of the collector's way while tests run and back before pytest's
    last collection; a freeze someone made before the plugin is left as it is."""
    pytester.makeconftest(GC_CONFTEST.format(at_import="gc.freeze()" if frozen_before else ""))
    pytester.makepyfile(test_gc=GC_TEST)
    assert pytester.runpytest_subprocess("-p", "tinyaccel").ret == 0
    during = int((pytester.path / "freeze-count-in-test.txt").read_text())
    at_end = int((pytester.path / "freeze-count-at-end.txt").read_text())
    assert during > 1000
    assert (at_end > 0) if frozen_before else (at_end == 0)
