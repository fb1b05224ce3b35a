"""The project's own runs are reproducible: constraints.txt pins every dependency
(all extras but the training-only one), and the environment running the tests
installed exactly those versions."""

from __future__ import annotations

import tomllib

from helpers import REPO
from packaging.requirements import Requirement
from tools.lock_diff import differences, locked_versions

INSTALL = 'pip install -c constraints.txt -e ".[test,zigzag,loadgen,hls4ml,dev,report,dask,board]"'


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_every_dependency_and_extra_is_locked() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra, reqs in project["optional-dependencies"].items():
        if extra not in ("train", "exporters"):  # torch-based, one-off tools: pinned exactly in pyproject.toml
            wanted += reqs
    pins = {_normal(name): v for name, v in locked_versions().items()}
    missing = [r for r in wanted if _normal(Requirement(r).name) not in pins]
    assert not missing, f"not in constraints.txt: {missing}; refresh the lock with `bash .ci/lock`"
    unsatisfied = [
        r for r in wanted if not Requirement(r).specifier.contains(pins[_normal(Requirement(r).name)], prereleases=True)
    ]
    assert not unsatisfied, f"constraints.txt violates pyproject.toml: {unsatisfied}; run `bash .ci/lock`"


def test_installed_versions_are_the_locked_ones() -> None:
    diffs = differences()
    assert not diffs, (
        "this environment differs from constraints.txt: "
        + ", ".join(f"{name} {now or 'missing'} (locked {locked})" for name, locked, now in diffs)
        + f"; install with `{INSTALL}`"
    )
