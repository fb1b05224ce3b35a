"""Bad input gets a clear error and loses nothing: every entry of the corpus (tests/badinput.py)
runs in a throw-away project; the run ends with the expected exit code, says what is wrong,
shows no traceback, and leaves every file of the user's byte for byte as it was."""

from __future__ import annotations

import pytest
from badinput import CORPUS, Fault, user_files
from helpers import Project


def test_corpus_is_large_and_ids_are_unique() -> None:
    ids = [f.id for f in CORPUS]
    assert len(ids) >= 100 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("fault", CORPUS, ids=[f.id for f in CORPUS])
def test_bad_input(project: Project, fault: Fault) -> None:
    project.add_model("ic")
    for action in fault.setup:
        action(project)
    before = user_files(project.path, fault.outputs)
    result = project.run(*fault.args)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == fault.ret, output
    assert fault.expect in output, output
    assert "Traceback" not in output and "INTERNALERROR" not in output, output
    assert user_files(project.path, fault.outputs) == before, "the run changed a file it did not write"
