"""Property-based fuzzing (Hypothesis) of what users write and what the plugin reads back:
manifests, margins and option values, golden.json, baseline files. The property: a clear
error of the documented type, or a correct result; never another exception, never a
changed user file."""

from __future__ import annotations

import json
import shutil
import string
import tomllib
from pathlib import Path

import numpy as np
import pytest
from badinput import user_files
from helpers import MODELS, Project, golden_meta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_tinyaccel.baseline import Baseline, BaselineError
from pytest_tinyaccel.config import ConfigError
from pytest_tinyaccel.goldens import store
from pytest_tinyaccel.margins import parse_margins
from pytest_tinyaccel.models import load_model

MANIFEST = (MODELS / "ic" / "model.toml").read_text()
KEYS = list(tomllib.loads(MANIFEST)) + [
    "name",
    "samples",
    "layer_samples",
    "model_int8",
    "top5_tolerance",
    "tolerance",
    "targets",
    "colour",
]
VALUES = st.one_of(
    st.integers(-3, 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(string.printable, max_size=20),
    st.just("../../etc/passwd"),
    st.just("X_test.npy"),
    st.lists(st.sampled_from(["fp32", "int8", "fp16", ""]), max_size=3),
    st.dictionaries(
        st.sampled_from(["atol", "rtol", "int8", "cpu", "skip", "xfail", "samples"]),
        st.one_of(st.floats(), st.integers(-2, 5), st.text(max_size=5)),
        max_size=3,
    ),
)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(value, "nan" if value != value else repr(value))
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else str(value)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz") / "models" / "ic"
    shutil.copytree(MODELS / "ic", folder)
    return folder


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_manifest_key_values(model_folder: Path, key: str, value: object) -> None:
    lines = [line for line in MANIFEST.splitlines() if not line.startswith(f"{key} =")]
    text = f"{key} = {_toml_value(value)}\n" + "\n".join(lines) + "\n"
    (model_folder / "model.toml").write_text(text)
    before = user_files(model_folder, ("model.toml",))
    try:
        model = load_model(model_folder / "model.toml")
    except ConfigError as exc:
        assert str(model_folder / "model.toml") in str(exc) and "key '" in str(exc)
    else:
        assert model.ndata >= 1 and 0 <= model.quality_target <= 1
    assert user_files(model_folder, ("model.toml",)) == before


@settings(max_examples=150)
@given(st.text(alphabet="cyclesnthrouputacy=%.,0123456789-naif ", max_size=40))
def test_margin_specs(spec: str) -> None:
    try:
        margins = parse_margins(spec, "--tinyaccel-max-regression")
    except ConfigError as exc:
        assert "--tinyaccel-max-regression" in str(exc)
    else:
        assert all(v >= 0 and v == v and v != float("inf") for v in margins.values())


JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def golden_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np

    folder = tmp_path_factory.mktemp("golden") / "m"
    store.write(folder, golden_meta(), np.zeros((1, 2), np.float32), {"fp32": {"y": np.ones((1, 2), np.float32)}})
    return folder


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(
        [
            "model",
            "model_sha256",
            "ndata",
            "layer_samples",
            "onnxruntime",
            "dtypes",
            "files",
            "format",
            "int8_accumulation",
        ]
    ),
    value=JSONISH,
)
def test_golden_json_fields(golden_folder: Path, key: str, value: object) -> None:
    path = golden_folder / "golden.json"
    original = path.read_text()
    meta = json.loads(original)
    meta[key] = value
    path.write_text(json.dumps(meta))
    try:
        golden = store.load(golden_folder)
    except store.GoldenError as exc:
        assert str(golden_folder) in str(exc) and "golden" in str(exc).lower()
    else:  # loaded: as written, nothing substituted, and every field the plugin reads has its type
        assert golden.meta[key] == value
        for field, kind in (("model", str), ("ndata", int), ("layer_samples", int), ("dtypes", dict)):
            assert isinstance(golden.meta[field], kind) and not isinstance(golden.meta[field], bool), field
        assert golden.meta["format"] == store.FORMAT
        assert golden.inputs.shape == (1, 2) and set(golden.outputs) == set(golden.meta["dtypes"])
        assert all(isinstance(a, np.ndarray) for named in golden.outputs.values() for a in named.values())
    finally:
        path.write_text(original)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=JSONISH)
def test_baseline_files(tmp_path: Path, data: object) -> None:
    path = tmp_path / "base.json"
    payload = {"format": "tinyaccel-profile/2", "environment": {}, "rows": data} if isinstance(data, list) else data
    path.write_text(json.dumps(payload))
    try:
        baseline = Baseline(path)
    except BaselineError as exc:
        assert "--tinyaccel-baseline" in str(exc)
    else:
        assert isinstance(baseline.rows, dict)


OPTION = st.sampled_from(
    [
        "--tinyaccel-dtype",
        "--tinyaccel-samples",
        "--tinyaccel-max-regression",
        "--tinyaccel-upgrade-tolerance",
        "--target",
        "--tinyaccel-report",
        "--tinyaccel-models",
        "--tinyaccel-golden",
        "--tinyaccel-baseline",
    ]
)
OPTION_VALUE = st.one_of(
    st.text(string.ascii_letters + string.digits + "=%.,:-_/", min_size=1, max_size=16),
    st.sampled_from(["0", "-1", "nan", "inf", "int8", "fp32", "hw", "cpu:hw", "x.md", "x.json"]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=OPTION, value=OPTION_VALUE)
def test_option_values_end_to_end(pytester: pytest.Pytester, option: str, value: str) -> None:
    """A real run with the fuzzed option: a usage error or a normal run, no traceback, user files kept."""
    project = Project(pytester)
    if not (project.path / "models" / "ic").exists():
        project.add_model("ic")
    before = user_files(project.path, ("x.md", "x.json", value))
    result = project.run(f"{option}={value}", "-m", "cpu", "-k", "golden and fp32")
    output = result.stdout.str() + result.stderr.str()
    if result.ret == pytest.ExitCode.USAGE_ERROR:  # refused up front, naming the option
        assert option in output, output
    elif option == "--tinyaccel-golden" and result.ret == pytest.ExitCode.TESTS_FAILED:
        # a folder without this model's golden: the golden check fails and says so
        outcomes = result.parseoutcomes()
        assert "no golden at" in output and outcomes["failed"] == 1 and "passed" not in outcomes, output
    elif result.ret == pytest.ExitCode.NO_TESTS_COLLECTED:  # a dtype the -k expression deselects
        assert (option, value) == ("--tinyaccel-dtype", "int8"), output
    else:  # accepted: the one golden check runs and passes
        assert result.ret == pytest.ExitCode.OK and result.parseoutcomes()["passed"] == 1, output
    assert "Traceback" not in output and "INTERNALERROR" not in output, output
    assert user_files(project.path, ("x.md", "x.json", value)) == before
