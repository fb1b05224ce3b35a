"""The golden store's durability, observed: every file of a new golden, and the folder that holds
them, reach the disk (fsync) before the switch makes them the golden, and the parent folder after
it, so a power cut leaves the old golden or the new one, never names pointing at unwritten data.
A kill test cannot see a missing fsync (the page cache survives a killed process); recording the
fsync calls by inode can."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import golden_meta

from pytest_tinyaccel.goldens import store

META = golden_meta()


def inode(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


@pytest.fixture
def journal(monkeypatch) -> list[tuple[str, tuple[int, int] | None]]:
    """('fsync', inode) for every fsync and ('switch', None) when the new golden is switched in."""
    events: list[tuple[str, tuple[int, int] | None]] = []
    real_fsync, real_switch = os.fsync, store._switch

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        events.append(("fsync", (st.st_dev, st.st_ino)))
        real_fsync(fd)

    def switch(staging: Path, folder: Path) -> None:
        events.append(("switch", None))
        real_switch(staging, folder)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(store, "_switch", switch)
    return events


def write(folder: Path, value: float) -> None:
    outputs = {"fp32": {"y": np.full((1, 2), value, np.float32), "z": np.zeros(3, np.float32)}}
    store.write(folder, META, np.zeros((1, 2), np.float32), outputs)


@pytest.mark.parametrize("existing", [False, True], ids=["first", "replaced"])
def test_every_file_and_the_folder_are_synced_before_the_switch_and_the_parent_after(tmp_path, journal, existing):
    folder = tmp_path / "golden" / "m"
    if existing:
        write(folder, 1.0)
        journal.clear()
    write(folder, 2.0)
    switch = journal.index(("switch", None))
    before = {ino for kind, ino in journal[:switch] if kind == "fsync"}
    after = {ino for kind, ino in journal[switch + 1 :] if kind == "fsync"}
    files = sorted(p for p in folder.iterdir())
    assert {p.name for p in files} == {"golden.json", "inputs.npy", "fp32.0.npy", "fp32.1.npy"}
    for path in files:
        assert inode(path) in before, f"{path.name} was not synced before the switch"
    assert inode(folder) in before, "the new golden's folder was not synced before the switch"
    assert inode(folder.parent) in after, "the parent folder was not synced after the switch"
    assert journal.count(("switch", None)) == 1
    assert store.load(folder).outputs["fp32"]["y"][0, 0] == 2.0
