"""Which installed packages differ from the versions locked in constraints.txt.

`python tests/tools/lock_diff.py` prints them (used by .ci/latest); the test suite
uses `differences` to check that the project's own runs use the locked versions.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement

CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"


def locked_versions(path: Path = CONSTRAINTS) -> dict[str, str]:
    """Package -> pinned version, for the pins whose markers apply to this interpreter."""
    pins = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate():
            pins[req.name] = next(iter(req.specifier)).version
    return pins


def differences(path: Path = CONSTRAINTS) -> list[tuple[str, str, str | None]]:
    """(package, locked, installed or None) for every pin this environment does not honour."""
    found = []
    for name, locked in sorted(locked_versions(path).items()):
        try:
            installed: str | None = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != locked:
            found.append((name, locked, installed))
    return found


if __name__ == "__main__":
    diffs = [(name, locked, now) for name, locked, now in differences() if now is not None]
    print("newer or older than constraints.txt:" if diffs else "every installed dependency is at its locked version")
    for name, locked, installed in diffs:
        print(f"  {name}: {locked} -> {installed}")
    sys.exit(0)
