"""Content-addressed build cache and atomic file writes.

Safe when several pytest-xdist workers (or machines sharing the folder) want the
same build at once: one builds under an exclusive file lock, the others wait and
reuse it. A build is visible only once its `.complete` marker exists; a folder
without one (a crash mid-build) is wiped and rebuilt. The marker lists the
sha256 of every file the build wrote, and a reuse checks them: a cached file
that was deleted or changed since (disk trouble, a stray edit) makes the build
run again instead of being blamed on the target. Builds happen in their final
folder because some toolchains bake absolute paths into their output.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

COMPLETE = ".complete"


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
    """The content hash of a file, read in 1 MiB chunks (models, data, golden and cached files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
