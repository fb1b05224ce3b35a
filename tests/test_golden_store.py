"""The golden store on its own: round trip, torn updates, crashes mid-write."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from helpers import golden_meta

from pytest_tinyaccel.goldens import store as golden


def _meta() -> dict:
    return golden_meta(ndata=2)


def test_round_trip(tmp_path):
    inputs = np.arange(8, dtype=np.float32).reshape(2, 4)
    golden.write(tmp_path / "m", _meta(), inputs, {"fp32": {"out": inputs * 2}})
    loaded = golden.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.inputs, inputs)
    np.testing.assert_array_equal(loaded.outputs["fp32"]["out"], inputs * 2)
    assert loaded.meta["dtypes"]["fp32"]["outputs"] == {"out": "fp32.0.npy"}


def test_crash_mid_write_leaves_old_golden_intact(tmp_path, monkeypatch):
    folder = tmp_path / "m"
    old = np.zeros((2, 4), np.float32)
    golden.write(folder, _meta(), old, {"fp32": {"out": old}})
    before = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    calls = []
    real_write = golden._write_synced

    def failing_write(path, data):
        calls.append(path.name)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(path, data)

    monkeypatch.setattr(golden, "_write_synced", failing_write)
    new = np.ones((2, 4), np.float32)
    with pytest.raises(OSError, match="disk full"):
        golden.write(folder, _meta(), new, {"fp32": {"out": new}})
    after = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing replaced, no staging folder left behind
    np.testing.assert_array_equal(golden.load(folder).outputs["fp32"]["out"], old)


def test_hand_edited_golden_is_detected(tmp_path):
    data = np.zeros((2, 4), np.float32)
    golden.write(tmp_path / "m", _meta(), data, {"fp32": {"out": data}})
    np.save(tmp_path / "m" / "fp32.0.npy", np.ones((2, 4), np.float32))
    with pytest.raises(golden.GoldenError, match="does not match the sha256 recorded in golden.json"):
        golden.load(tmp_path / "m")


def test_user_files_in_a_golden_folder_survive_an_update(tmp_path):
    folder = tmp_path / "m"
    data = np.zeros((2, 4), np.float32)
    golden.write(folder, _meta(), data, {"fp32": {"out": data}})
    (folder / "NOTES.md").write_text("why this golden looks the way it does")
    (folder / "X_test.npy").write_bytes(b"not the store's")
    golden.write(folder, _meta(), data + 1, {"fp32": {"out": data + 1}})
    assert (folder / "NOTES.md").read_text() == "why this golden looks the way it does"
    assert (folder / "X_test.npy").read_bytes() == b"not the store's"
    np.testing.assert_array_equal(golden.load(folder).inputs, data + 1)


def test_interrupted_portable_switch_rolls_forward(tmp_path, monkeypatch):
    """Without renameat2, a kill between the two renames leaves the golden missing: the next
    reader moves the complete new golden into place."""
    folder = tmp_path / "m"
    data = np.zeros((2, 4), np.float32)
    golden.write(folder, _meta(), data, {"fp32": {"out": data}})
    monkeypatch.setattr(golden, "_exchange", lambda a, b: False)
    real_rename = os.rename
    calls = []

    def killed_after_first_rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies here
        real_rename(src, dst)

    monkeypatch.setattr(golden.os, "rename", killed_after_first_rename)
    monkeypatch.setattr(golden.shutil, "rmtree", lambda *a, **k: None)  # a killed process cleans nothing
    with pytest.raises(KeyboardInterrupt):
        golden.write(folder, _meta(), data + 1, {"fp32": {"out": data + 1}})
    monkeypatch.undo()
    assert not folder.exists()
    np.testing.assert_array_equal(golden.load(folder).inputs, data + 1)


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda m: m.pop("model_sha256"), "model_sha256"),
        (lambda m: m.update(ndata="ten"), "ndata"),
        (lambda m: m["files"].update({"../../models/ic/X_test.npy": "0" * 64}), "files.../../models/ic/X_test.npy"),
        (lambda m: m["dtypes"]["fp32"].update(outputs={"out": "nowhere.npy"}), "dtypes.fp32.outputs"),
        (lambda m: m.update(dtypes=[]), "dtypes"),
    ],
)
def test_malformed_golden_json_names_the_key(tmp_path, edit, key):
    data = np.zeros((2, 4), np.float32)
    golden.write(tmp_path / "m", _meta(), data, {"fp32": {"out": data}})
    path = tmp_path / "m" / "golden.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(golden.GoldenError, match=re.escape(f"key '{key}'")):
        golden.load(tmp_path / "m")


def test_missing_and_invalid(tmp_path):
    with pytest.raises(golden.GoldenError, match="no golden at"):
        golden.load(tmp_path)
    (tmp_path / "golden.json").write_text("{not json")
    with pytest.raises(golden.GoldenError, match="is not valid JSON"):
        golden.load(tmp_path)


def test_per_kernel_goldens_round_trip_deterministically(tmp_path):
    data = np.zeros((2, 4), np.float32)
    layers = {"fp32": {"conv1/out:0": np.arange(6, dtype=np.float32).reshape(1, 6), "relu": np.ones((1, 3), np.uint8)}}
    golden.write(tmp_path / "a", _meta(), data, {"fp32": {"out": data}}, layers)
    golden.write(tmp_path / "b", _meta(), data, {"fp32": {"out": data}}, layers)
    assert (tmp_path / "a" / "layers.fp32.npz").read_bytes() == (tmp_path / "b" / "layers.fp32.npz").read_bytes()
    loaded = golden.load(tmp_path / "a").layers("fp32")
    assert list(loaded) == ["conv1/out:0", "relu"]
    np.testing.assert_array_equal(loaded["conv1/out:0"], layers["fp32"]["conv1/out:0"])
    assert loaded["relu"].dtype == np.uint8


def test_bundled_golden_layers_match_onnx_runtime():
    """The committed per-kernel goldens are ONNX Runtime's intermediate tensors of the first sample."""
    from helpers import GOLDEN, MODELS

    from pytest_tinyaccel.intermediates import ort_intermediates

    stored = golden.load(GOLDEN / "ic")
    layers = stored.layers("fp32")
    assert len(layers) >= 10
    fresh = ort_intermediates(MODELS / "ic" / "model.onnx", {"input": stored.inputs[:1]})
    for name, value in layers.items():
        np.testing.assert_allclose(value, fresh[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_top5_near_ties_may_reorder_but_real_changes_fail():
    from pytest_tinyaccel.goldens.compare import compare_top5

    reference = [[[3, 0.9], [1, 0.05], [7, 0.00002], [2, 0.00001], [5, 0.000005]]]
    label = str
    # 7 and 2 differ by 1e-5 in the reference: their order is not resolvable at tol 0.01
    tail_swap = np.zeros((1, 10), np.float32)
    tail_swap[0, [3, 1, 2, 7, 5]] = [0.9, 0.05, 0.00003, 0.00001, 0.000004]
    assert compare_top5(reference, tail_swap, 0.01, label)[0] == 0
    # a class outside the reference Top-5 entering at a near-zero rank is a near-tie too
    tail_new = tail_swap.copy()
    tail_new[0, 5], tail_new[0, 9] = 0.0, 0.000006
    assert compare_top5(reference, tail_new, 0.01, label)[0] == 0
    # swapping the top two (0.9 vs 0.05) is a real change, as is a probability moved by 0.02
    top_swap = tail_swap.copy()
    top_swap[0, [3, 1]] = [0.05, 0.9]
    assert compare_top5(reference, top_swap, 0.01, label)[0] == 2
    moved = tail_swap.copy()
    moved[0, 3] = 0.88
    bad, table = compare_top5(reference, moved, 0.01, label)
    assert bad == 1 and "0.900000 3" in table and "0.880000 3" in table
