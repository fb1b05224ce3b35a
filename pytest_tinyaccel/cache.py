"""Content-addressed build cache and atomic file writes.

Safe when several pytest-xdist workers (or machines sharing the folder) want the
same build at once: one builds under an exclusive file lock, the others wait and
reuse it. A build is visible only once its `.complete` marker exists; a folder
without one (a crash mid-build) is wiped and rebuilt. The marker lists the
sha256 of every file the build wrote, and a reuse checks them: a cached file
that was deleted or changed since (disk trouble, a stray edit) makes the build
run again instead of being blamed on the target. Builds happen in their final
folder because some toolchains bake absolute paths into their output.

Facts read from a file (its sha256, what a model's graph says) are remembered by the
file's identity (`remembered`): path, size, inode, and modification and change times
to the nanosecond. A session keeps them in its cache folder between runs (`keep_facts`),
so an unchanged model is neither hashed nor parsed again; any write to the file changes
its change time, and a file changed in the last seconds is never remembered (a second
write could keep its times), so a fact is never served for other bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

COMPLETE = ".complete"
FACTS = "facts.json"
SETTLED_NS = 2_000_000_000
"""A file is remembered only when its last write is older than this (coarse file-system clocks)."""


def content_key(parts: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of `parts` (everything that changes the product)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) on `path`, created if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; it replaces `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as an ordinary file would be, not mkstemp's 0600
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


class BuildCache:
    """Folders keyed by content hash under `root`; counts what it built and reused."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.built: list[str] = []
        self.reused: list[str] = []
        self.failed: list[str] = []
        self.refused: list[str] = []
        """Builds the target declined (an exception with a true `refusal` attribute): skips, not failures."""
        self.repaired: list[str] = []
        """Cached folders whose files no longer matched their record, built again."""

    def get(self, kind: str, label: str, parts: dict[str, Any], produce: Callable[[Path], None]) -> Path:
        """The folder for `parts`, running `produce(folder)` once if it is not complete and intact."""
        key = content_key({"kind": kind, **parts})
        folder = self.root / kind / f"{label}-{key[:16]}"
        if _intact(folder):
            self.reused.append(folder.name)
            return folder
        with file_lock(folder.with_name(folder.name + ".lock")):
            if _intact(folder):
                self.reused.append(folder.name)
                return folder
            if (folder / COMPLETE).exists():
                self.repaired.append(folder.name)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            try:
                produce(folder)
            except BaseException as exc:
                shutil.rmtree(folder, ignore_errors=True)
                (self.refused if getattr(exc, "refusal", False) else self.failed).append(folder.name)
                raise
            atomic_write_text(folder / "key.json", json.dumps(parts, indent=1, sort_keys=True, default=str))
            atomic_write_text(folder / COMPLETE, json.dumps(_digests(folder), indent=0, sort_keys=True))
            self.built.append(folder.name)
        return folder


def file_sha256(path: Path) -> str:
    """The content hash of a file, read in 1 MiB chunks (models, data, golden and cached files);
    remembered while the file is unchanged."""
    return remembered("sha256", path, lambda: _sha256(path))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Facts:
    """Facts by (kind, file), each with the identity of the file it was read from; optionally kept in a file."""

    def __init__(self) -> None:
        self.store: Path | None = None
        self.entries: dict[str, dict[str, Any]] = {}
        self.changed = False


_facts = _Facts()


def _identity(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_ino, st.st_dev, st.st_mtime_ns, st.st_ctime_ns]


def remembered(kind: str, path: Path, read: Callable[[], Any]) -> Any:
    """`read()` (a JSON value derived from the file's bytes alone), or what it returned for the same file
    unchanged. A file written in the last seconds is read every time."""
    key = f"{kind}\0{os.path.realpath(path)}"
    identity = _identity(path)
    entry = _facts.entries.get(key)
    if entry is not None and entry["id"] == identity:
        return entry["value"]
    value = read()
    settled = time.time_ns() - max(identity[3], identity[4]) > SETTLED_NS
    if settled and _identity(path) == identity:  # not written while it was read
        _facts.entries[key] = {"id": identity, "value": value}
        _facts.changed = True
    return value


def keep_facts(folder: Path) -> None:
    """Remember facts between runs in `folder` (a session's cache folder): load what earlier runs kept."""
    _facts.store, _facts.entries, _facts.changed = folder / FACTS, {}, False
    try:
        kept = json.loads(_facts.store.read_text())
    except (OSError, ValueError):  # none yet, or damaged: read the files again
        return
    if isinstance(kept, dict):
        _facts.entries = {k: e for k, e in kept.items() if isinstance(e, dict) and e.keys() == {"id", "value"}}


def save_facts() -> None:
    """Write the remembered facts of files that still exist unchanged (atomically; a failure only costs speed)."""
    if _facts.store is None or not _facts.changed:
        return
    current = {}
    for key, entry in _facts.entries.items():
        try:
            if _identity(Path(key.split("\0", 1)[1])) == entry["id"]:
                current[key] = entry
        except OSError:
            continue
    with contextlib.suppress(OSError):
        atomic_write_text(_facts.store, json.dumps(current))
    _facts.changed = False


def _digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (but the marker), by relative path."""
    return {
        path.relative_to(folder).as_posix(): file_sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink() and path.name != COMPLETE
    }


def _intact(folder: Path) -> bool:
    """Complete, and every file the build wrote still has its recorded content."""
    try:
        recorded = json.loads((folder / COMPLETE).read_text())
        return isinstance(recorded, dict) and all(
            file_sha256(folder / name) == digest for name, digest in recorded.items()
        )
    except (OSError, ValueError):
        return False
