"""The bad-input corpus: one declarative entry per fault a user can bring (manifest, data,
model, golden, options, target settings, cache). tests/test_bad_input.py runs each one in a
throw-away project and checks the exit code, a fragment of the message, and that no file
of the user's changed.

An entry is `Fault(id, setup, args, expect, ret)`: `setup` is a list of actions on the
project (made by the helpers below), `args` the pytest arguments, `expect` a text the
output (stdout + stderr) must contain, `ret` pytest's exit code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from helpers import Project
from onnx import TensorProto, helper

Action = Callable[[Project], None]
GOLDEN_FP32 = ("-m", "cpu", "-k", "golden and fp32")
GOLDEN_INT8 = ("-m", "cpu", "-k", "golden and int8")
ACCURACY = ("-m", "cpu", "-k", "accuracy and fp32")
USAGE, FAILED, OK = 4, 1, 0
BROKEN = FAILED
"""A manifest that cannot be used: that model's tests error at setup (exit code 1); other models still run."""


@dataclass(frozen=True)
class Fault:
    id: str
    setup: list[Action]
    args: tuple[str, ...]
    expect: str
    ret: int
    outputs: tuple[str, ...] = field(default=())
    """Paths (relative) the run may write besides pytest's cache: reports, goldens on update."""


# ----- actions ------------------------------------------------------------------------------


def edit(old: str, new: str, model: str = "ic") -> Action:
    return lambda p: p.edit_manifest(model, old, new)


def top(line: str, model: str = "ic") -> Action:
    """Put `line` first in the manifest (top-level key, before any table)."""

    def act(p: Project) -> None:
        path = p.manifest(model)
        path.write_text(line + "\n" + path.read_text())

    return act


def table(text: str, model: str = "ic") -> Action:
    return lambda p: p.append_manifest(model, text)


def write(rel: str, data: bytes | str) -> Action:
    def act(p: Project) -> None:
        path = p.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return act


def npy(rel: str, array: np.ndarray, allow_pickle: bool = False) -> Action:
    def act(p: Project) -> None:
        np.save(p.path / rel, array, allow_pickle=allow_pickle)

    return act


def transform(rel: str, fn: Callable[[np.ndarray], np.ndarray]) -> Action:
    def act(p: Project) -> None:
        path = p.path / rel
        np.save(path, fn(np.load(path)))

    return act


def onnx_edit(rel: str, fn: Callable[[onnx.ModelProto], None]) -> Action:
    def act(p: Project) -> None:
        model = onnx.load(p.path / rel)
        fn(model)
        onnx.save(model, p.path / rel)

    return act


def golden_json(fn: Callable[[dict], object]) -> Action:
    """Edit golden.json in place (`fn` mutates the parsed meta)."""

    def act(p: Project) -> None:
        path = p.path / "golden" / "ic" / "golden.json"
        meta = json.loads(path.read_text())
        fn(meta)
        path.write_text(json.dumps(meta))

    return act


def pyproject(text: str, replace: bool = False) -> Action:
    def act(p: Project) -> None:
        path = p.path / "pyproject.toml"
        path.write_text(("" if replace else path.read_text() + "\n") + text + "\n")

    return act


def second_model(name_line: str) -> Action:
    """A copy of ic under another folder, with `name_line` first in its manifest."""

    def act(p: Project) -> None:
        import shutil

        shutil.copytree(p.path / "models" / "ic", p.path / "models" / "ic2")
        path = p.path / "models" / "ic2" / "model.toml"
        path.write_text(name_line + "\n" + path.read_text())

    return act


def _unknown_op(model: onnx.ModelProto) -> None:
    model.graph.node[0].op_type = "FrobnicateConv"


def _opset(model: onnx.ModelProto) -> None:
    model.opset_import[0].version = 99


def _ir(model: onnx.ModelProto) -> None:
    model.ir_version = 99


def _external_outside(model: onnx.ModelProto) -> None:
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../../outside.bin")


def _two_inputs(model: onnx.ModelProto) -> None:
    model.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [None, 3]))


def _retouch(model: onnx.ModelProto) -> None:
    model.doc_string = "edited after the golden was made"


def _nan_weights(model: onnx.ModelProto) -> None:
    from onnx import numpy_helper

    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    values = numpy_helper.to_array(tensor).copy()
    values.flat[0] = np.nan
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))


def _baseline(rows: object, fmt: str = "tinyaccel-profile/2") -> str:
    return json.dumps({"format": fmt, "environment": {}, "rows": rows})


def _row(**perf: object) -> dict:
    return {
        "model": "ic",
        "target": "cpu",
        "mode": "hw",
        "dtype": "fp32",
        "use_case": "IC",
        "architecture": "",
        "link": "",
        "metric": "top1",
        "quality_target": 0.97,
        "perf": {"simulator": "x", **perf},
    }


# ----- the corpus ---------------------------------------------------------------------------

CORPUS: list[Fault] = [
    # manifests: a collection error naming the file and the key
    Fault(
        "manifest-missing-key",
        [edit('use_case = "Image Classification"\n', "")],
        GOLDEN_FP32,
        "key 'use_case': missing (required)",
        BROKEN,
    ),
    Fault(
        "manifest-task",
        [edit('task = "classification"', 'task = "regression"')],
        GOLDEN_FP32,
        "key 'task': 'regression' is not one of",
        BROKEN,
    ),
    Fault(
        "manifest-metric-task",
        [edit('metric = "top1"', 'metric = "auc"')],
        GOLDEN_FP32,
        "key 'metric': 'auc' is not valid for task 'classification'",
        BROKEN,
    ),
    Fault(
        "manifest-target-range",
        [edit("quality_target = 0.97", "quality_target = 1.5")],
        GOLDEN_FP32,
        "key 'quality_target': must be a fraction",
        BROKEN,
    ),
    Fault(
        "manifest-target-type",
        [edit("quality_target = 0.97", 'quality_target = "high"')],
        GOLDEN_FP32,
        "key 'quality_target': expected float",
        BROKEN,
    ),
    Fault(
        "manifest-target-nan",
        [edit("quality_target = 0.97", "quality_target = nan")],
        GOLDEN_FP32,
        "key 'quality_target': expected a finite number",
        BROKEN,
    ),
    Fault(
        "manifest-dtype-unknown",
        [edit('dtypes = ["fp32", "int8"]', 'dtypes = ["fp16"]')],
        GOLDEN_FP32,
        "key 'dtypes': expected a non-empty list",
        BROKEN,
    ),
    Fault(
        "manifest-dtypes-empty",
        [edit('dtypes = ["fp32", "int8"]', "dtypes = []")],
        GOLDEN_FP32,
        "key 'dtypes': expected a non-empty list",
        BROKEN,
    ),
    Fault(
        "manifest-dtypes-repeated",
        [edit('dtypes = ["fp32", "int8"]', 'dtypes = ["fp32", "fp32"]')],
        GOLDEN_FP32,
        "distinct values",
        BROKEN,
    ),
    Fault(
        "manifest-ndata-zero",
        [edit("ndata = 10", "ndata = 0")],
        GOLDEN_FP32,
        "key 'ndata': must be at least 1",
        BROKEN,
    ),
    Fault(
        "manifest-ndata-negative",
        [edit("ndata = 10", "ndata = -3")],
        GOLDEN_FP32,
        "key 'ndata': must be at least",
        BROKEN,
    ),
    Fault(
        "manifest-ndata-float", [edit("ndata = 10", "ndata = 2.5")], GOLDEN_FP32, "key 'ndata': expected int", BROKEN
    ),
    Fault(
        "manifest-ndata-bool", [edit("ndata = 10", "ndata = true")], GOLDEN_FP32, "key 'ndata': expected int", BROKEN
    ),
    Fault("manifest-samples-zero", [top("samples = 0")], GOLDEN_FP32, "key 'samples': must be at least 1", BROKEN),
    Fault(
        "manifest-layer-samples-big",
        [top("layer_samples = 20")],
        GOLDEN_FP32,
        "key 'layer_samples': must be between 0 and ndata",
        BROKEN,
    ),
    Fault(
        "manifest-layer-samples-negative",
        [top("layer_samples = -1")],
        GOLDEN_FP32,
        "key 'layer_samples': must be at least 0",
        BROKEN,
    ),
    Fault(
        "manifest-model-missing",
        [edit('model = "model.onnx"', 'model = "missing.onnx"')],
        GOLDEN_FP32,
        "key 'model': file 'missing.onnx' does not exist",
        BROKEN,
    ),
    Fault(
        "manifest-model-escapes",
        [write("escape.onnx", b"x"), edit('model = "model.onnx"', 'model = "../../escape.onnx"')],
        GOLDEN_FP32,
        "leaves the model folder",
        BROKEN,
    ),
    Fault(
        "manifest-model-absolute",
        [edit('model = "model.onnx"', 'model = "/etc/hostname"')],
        GOLDEN_FP32,
        "leaves the model folder",
        BROKEN,
    ),
    Fault(
        "manifest-xtest-type",
        [edit('x_test = "X_test.npy"', "x_test = 5")],
        GOLDEN_FP32,
        "key 'x_test': expected string",
        BROKEN,
    ),
    Fault(
        "manifest-no-calibration",
        [edit('calibration = "X_calib.npy"\n', "")],
        GOLDEN_FP32,
        "key 'calibration': int8 is listed in dtypes",
        BROKEN,
    ),
    Fault("manifest-unknown-key", [top('colour = "blue"')], GOLDEN_FP32, "key 'colour': unknown key", BROKEN),
    Fault("manifest-syntax", [top("ndata = = 3")], GOLDEN_FP32, "key '(syntax)': not valid TOML", BROKEN),
    Fault(
        "manifest-not-utf8",
        [write("models/ic/model.toml", b"\xff\xfe\x00bad")],
        GOLDEN_FP32,
        "model.toml: key '(",
        BROKEN,
    ),
    Fault("manifest-name-path", [top('name = "../models/ic"')], GOLDEN_FP32, "is not a model name", BROKEN),
    Fault("manifest-name-absolute", [top('name = "/tmp/ic"')], GOLDEN_FP32, "is not a model name", BROKEN),
    Fault("manifest-name-space", [top('name = "ic model"')], GOLDEN_FP32, "is not a model name", BROKEN),
    Fault("manifest-name-dots", [top('name = ".."')], GOLDEN_FP32, "is not a model name", BROKEN),
    Fault(
        "manifest-top5-nan",
        [top("top5_tolerance = nan")],
        GOLDEN_FP32,
        "key 'top5_tolerance': expected a finite",
        BROKEN,
    ),
    Fault(
        "manifest-top5-negative",
        [top("top5_tolerance = -1")],
        GOLDEN_FP32,
        "key 'top5_tolerance': must be at least 0",
        BROKEN,
    ),
    Fault(
        "manifest-atol-negative",
        [table("[tolerance]\natol = -1")],
        GOLDEN_FP32,
        "key 'tolerance.atol': must be at least 0",
        BROKEN,
    ),
    Fault(
        "manifest-atol-nan",
        [table("[tolerance]\natol = nan")],
        GOLDEN_FP32,
        "key 'tolerance.atol': expected a finite number",
        BROKEN,
    ),
    Fault(
        "manifest-rtol-string",
        [table('[tolerance.int8]\nrtol = "tight"')],
        GOLDEN_FP32,
        "key 'tolerance.int8.rtol': expected float",
        BROKEN,
    ),
    Fault(
        "manifest-tolerance-deep",
        [table("[tolerance.aie.int8.extra]\natol = 1")],
        GOLDEN_FP32,
        "expected atol/rtol, or a table named after a dtype or target",
        BROKEN,
    ),
    Fault(
        "manifest-quant-format",
        [edit("reduce_range = true", 'reduce_range = true\nformat = "QFoo"')],
        GOLDEN_FP32,
        "key 'quantization.format': 'QFoo' is not one of",
        BROKEN,
    ),
    Fault(
        "manifest-quant-bool",
        [edit("reduce_range = true", 'reduce_range = "yes"')],
        GOLDEN_FP32,
        "key 'quantization.reduce_range': expected bool",
        BROKEN,
    ),
    Fault(
        "manifest-quant-samples",
        [edit("reduce_range = true", "reduce_range = true\ncalibration_samples = 0")],
        GOLDEN_FP32,
        "key 'quantization.calibration_samples': must be at least 1",
        BROKEN,
    ),
    Fault(
        "manifest-quant-unknown",
        [edit("reduce_range = true", "reduce_range = true\nbits = 4")],
        GOLDEN_FP32,
        "key 'quantization.bits': unknown key",
        BROKEN,
    ),
    Fault(
        "manifest-skip-type",
        [table("[targets.cpu]\nskip = 3")],
        GOLDEN_FP32,
        "key 'targets.cpu.skip': expected string",
        BROKEN,
    ),
    Fault(
        "manifest-skip-empty",
        [table('[targets.cpu]\nskip = " "')],
        GOLDEN_FP32,
        "key 'targets.cpu.skip': expected the reason as a non-empty string",
        BROKEN,
    ),
    Fault(
        "manifest-target-samples",
        [table("[targets.cpu]\nsamples = 0")],
        GOLDEN_FP32,
        "key 'targets.cpu.samples': must be at least 1",
        BROKEN,
    ),
    Fault(
        "manifest-margin-nan",
        [table('[targets.cpu]\nmax_regression = "ns=nan%"')],
        GOLDEN_FP32,
        "margin must be a finite number",
        BROKEN,
    ),
    Fault(
        "manifest-margin-metric",
        [table('[targets.cpu]\nmax_regression = "latency=5%"')],
        GOLDEN_FP32,
        "key 'latency': unknown metric",
        BROKEN,
    ),
    Fault(
        "manifest-xfail-type",
        [table("[targets.cpu]\nxfail = 5")],
        GOLDEN_FP32,
        "key 'targets.cpu.xfail': expected str or dict",
        BROKEN,
    ),
    Fault(
        "manifest-xfail-key",
        [table('[targets.cpu]\nxfail = { fp16 = "no" }')],
        GOLDEN_FP32,
        "key 'fp16': expected a dtype",
        BROKEN,
    ),
    Fault("manifest-targets-type", [top("targets = 5")], GOLDEN_FP32, "key 'targets': expected table", BROKEN),
    Fault(
        "manifest-labels-missing",
        [edit('labels = "labels.txt"', 'labels = "nope.txt"')],
        GOLDEN_FP32,
        "key 'labels': file 'nope.txt' does not exist",
        BROKEN,
    ),
    Fault("manifest-duplicate-names", [second_model('name = "ic"')], GOLDEN_FP32, "model names must be unique", BROKEN),
    Fault(
        "manifest-folder-without-manifest",
        [write("models/notes/README.txt", "not a model")],
        GOLDEN_FP32,
        "the model folder has no model.toml",
        BROKEN,
    ),
    # data: the case fails with the file and what to do; other cases still run
    Fault(
        "data-pickle",
        [npy("models/ic/X_test.npy", np.array([{"a": 1}] * 20, dtype=object), allow_pickle=True)],
        GOLDEN_FP32,
        "refused, the file holds pickled Python objects",
        FAILED,
    ),
    Fault(
        "data-huge-header",
        [
            write(
                "models/ic/X_test.npy",
                b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, "
                b"'shape': (1000000000000000, 1, 8, 8), }" + b" " * 44 + b"\n" + b"\x00" * 64,
            )
        ],
        GOLDEN_FP32,
        "the header declares shape",
        FAILED,
    ),
    Fault(
        "data-garbage",
        [write("models/ic/X_test.npy", b"this is not numpy")],
        GOLDEN_FP32,
        "not a readable .npy file",
        FAILED,
    ),
    Fault(
        "data-archive", [write("models/ic/X_test.npy", b"PK\x03\x04" + b"\x00" * 30)], GOLDEN_FP32, "X_test.npy", FAILED
    ),
    Fault(
        "data-shape",
        [transform("models/ic/X_test.npy", lambda x: x.reshape(len(x), -1))],
        GOLDEN_FP32,
        "expects [N, 1, 8, 8]",
        FAILED,
    ),
    Fault(
        "data-int",
        [transform("models/ic/X_test.npy", lambda x: x.astype(np.int32))],
        GOLDEN_FP32,
        "store float data",
        FAILED,
    ),
    Fault(
        "data-nan",
        [
            transform(
                "models/ic/X_test.npy",
                lambda x: np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x).astype(x.dtype),
            )
        ],
        GOLDEN_FP32,
        "NaN/Inf values",
        FAILED,
    ),
    Fault("data-too-few", [transform("models/ic/X_test.npy", lambda x: x[:4])], GOLDEN_FP32, "samples", FAILED),
    Fault("data-strings", [npy("models/ic/X_test.npy", np.array(["a"] * 20))], GOLDEN_FP32, "is not numeric", FAILED),
    Fault(
        "labels-float",
        [transform("models/ic/y_test.npy", lambda y: y.astype(np.float32) + 0.5)],
        ACCURACY,
        "labels must be integers",
        FAILED,
    ),
    Fault(
        "labels-onehot",
        [transform("models/ic/y_test.npy", lambda y: np.eye(10, dtype=np.float32)[y])],
        ACCURACY,
        "one-hot?",
        FAILED,
    ),
    Fault(
        "labels-range",
        [transform("models/ic/y_test.npy", lambda y: np.where(np.arange(len(y)) == 2, 42, y))],
        ACCURACY,
        "label(s) outside the model's 10 classes",
        FAILED,
    ),
    Fault(
        "labels-negative",
        [transform("models/ic/y_test.npy", lambda y: np.where(np.arange(len(y)) == 0, -1, y))],
        ACCURACY,
        "outside the model's 10 classes",
        FAILED,
    ),
    Fault(
        "labels-nan",
        [transform("models/ic/y_test.npy", lambda y: np.where(np.arange(len(y)) == 0, np.nan, y.astype(np.float32)))],
        ACCURACY,
        "labels must be integers",
        FAILED,
    ),
    Fault(
        "calibration-pickle",
        [npy("models/ic/X_calib.npy", np.array([None] * 3, dtype=object), allow_pickle=True)],
        ("-m", "cpu", "-k", "golden and int8", "-p", "no:cacheprovider"),
        "pickled Python objects",
        FAILED,
    ),
    # models
    Fault("model-empty-file", [write("models/ic/model.onnx", b"")], GOLDEN_FP32, "has an empty graph", FAILED),
    Fault(
        "model-garbage",
        [write("models/ic/model.onnx", b"\x08\x07garbage\xff\xff\xff")],
        GOLDEN_FP32,
        "model.onnx",
        FAILED,
    ),
    Fault(
        "model-unknown-op",
        [onnx_edit("models/ic/model.onnx", _unknown_op)],
        GOLDEN_FP32,
        "No Op registered for FrobnicateConv",
        FAILED,
    ),
    Fault(
        "model-unknown-op-int8",
        [onnx_edit("models/ic/model.onnx", _unknown_op)],
        ("-m", "cpu", "-k", "golden and int8", "-p", "no:cacheprovider"),
        "ONNX Runtime cannot load model.onnx",
        FAILED,
    ),
    Fault(
        "model-opset-99",
        [onnx_edit("models/ic/model.onnx", _opset)],
        GOLDEN_FP32,
        "Opset 99 is under development",
        FAILED,
    ),
    Fault(
        "model-opset-99-int8",
        [onnx_edit("models/ic/model.onnx", _opset)],
        ("-m", "cpu", "-k", "golden and int8", "-p", "no:cacheprovider"),
        "ONNX Runtime cannot load",
        FAILED,
    ),
    Fault(
        "model-ir-99", [onnx_edit("models/ic/model.onnx", _ir)], GOLDEN_FP32, "Unsupported model IR version: 99", FAILED
    ),
    Fault(
        "model-external-data-outside",
        [onnx_edit("models/ic/model.onnx", _external_outside)],
        GOLDEN_FP32,
        "lies outside the model's folder",
        FAILED,
    ),
    Fault(
        "model-two-inputs",
        [onnx_edit("models/ic/model.onnx", _two_inputs)],
        GOLDEN_FP32,
        "tinyaccel feeds single-input models",
        FAILED,
    ),
    Fault(
        "model-int8-corrupt",
        [
            write("models/ic/model_int8.onnx", b"\x01\x02"),
            edit("ndata = 10", 'ndata = 10\nmodel_int8 = "model_int8.onnx"'),
        ],
        GOLDEN_INT8,
        "model_int8.onnx",
        FAILED,
    ),
    # goldens: the test fails and says what to run
    Fault("golden-not-json", [write("golden/ic/golden.json", "{not json")], GOLDEN_FP32, "is not valid JSON", FAILED),
    Fault("golden-list", [write("golden/ic/golden.json", "[1, 2]")], GOLDEN_FP32, "golden format", FAILED),
    Fault(
        "golden-format",
        [golden_json(lambda m: m.update(format=99))],
        GOLDEN_FP32,
        "golden format 99, this plugin reads 1",
        FAILED,
    ),
    Fault(
        "golden-missing-key", [golden_json(lambda m: m.pop("model_sha256"))], GOLDEN_FP32, "key 'model_sha256'", FAILED
    ),
    Fault("golden-wrong-type", [golden_json(lambda m: m.update(ndata="ten"))], GOLDEN_FP32, "key 'ndata'", FAILED),
    Fault(
        "golden-files-escape",
        [golden_json(lambda m: m["files"].update({"../../models/ic/X_test.npy": "0" * 64}))],
        GOLDEN_FP32,
        "must be a plain name in its folder",
        FAILED,
    ),
    Fault("golden-dtypes-type", [golden_json(lambda m: m.update(dtypes=[]))], GOLDEN_FP32, "key 'dtypes'", FAILED),
    Fault(
        "golden-variant-no-maker",
        [golden_json(lambda m: m["dtypes"]["int8"].update(variants={"avx2_int16_pairs": {"outputs": {}}}))],
        GOLDEN_INT8,
        "key 'dtypes.int8.variants'",
        FAILED,
    ),
    Fault(
        "golden-variant-unlisted-file",
        [
            golden_json(
                lambda m: m["dtypes"]["int8"].update(
                    variants={"avx2_int16_pairs": {"made_by": "x", "outputs": {"probs": "int8.other.0.npy"}}}
                )
            )
        ],
        GOLDEN_INT8,
        "key 'dtypes.int8.variants'",
        FAILED,
    ),
    Fault(
        "golden-arithmetics-type",
        [golden_json(lambda m: m["dtypes"]["int8"].update(arithmetics=["exact"]))],
        GOLDEN_INT8,
        "key 'dtypes.int8.arithmetics'",
        FAILED,
    ),
    Fault(
        "golden-file-deleted",
        [lambda p: (p.path / "golden" / "ic" / "fp32.0.npy").unlink()],
        GOLDEN_FP32,
        "is missing although golden.json lists it",
        FAILED,
    ),
    Fault(
        "golden-file-edited",
        [transform("golden/ic/fp32.0.npy", lambda a: a * 2)],
        GOLDEN_FP32,
        "does not match the sha256 recorded",
        FAILED,
    ),
    Fault(
        "golden-missing",
        [lambda p: __import__("shutil").rmtree(p.path / "golden")],
        GOLDEN_FP32,
        "to create it: pytest",
        FAILED,
    ),
    Fault(
        "golden-stale-model",
        [onnx_edit("models/ic/model.onnx", _retouch)],
        GOLDEN_FP32,
        "is stale: model.onnx changed since the golden was written",
        FAILED,
    ),
    Fault(
        "golden-stale-inputs",
        [transform("models/ic/X_test.npy", lambda x: x[::-1].copy())],
        GOLDEN_FP32,
        "differ from the golden's inputs",
        FAILED,
    ),
    Fault(
        "golden-folder-is-file",
        [
            lambda p: __import__("shutil").rmtree(p.path / "golden" / "ic"),
            write("golden/ic", "a file where the golden folder goes"),
        ],
        ("-m", "cpu", "-k", "golden and fp32", "--tinyaccel-update-golden"),
        "is not a folder; move it away",
        FAILED,
    ),
    Fault(
        "golden-update-nan",
        [onnx_edit("models/ic/model.onnx", _nan_weights)],
        ("-m", "cpu", "-k", "golden and fp32", "--tinyaccel-update-golden"),
        "no golden is written",
        FAILED,
    ),
    # options: a usage error before anything runs
    Fault("option-dtype", [], ("--tinyaccel-dtype", "int4"), "argument --tinyaccel-dtype: int4: not a dtype", USAGE),
    Fault("option-samples-zero", [], ("--tinyaccel-samples", "0"), "--tinyaccel-samples: 0: give at least 1", USAGE),
    Fault("option-samples-negative", [], ("--tinyaccel-samples=-1",), "give at least 1", USAGE),
    Fault("option-samples-text", [], ("--tinyaccel-samples", "many"), "'many' is not a whole number", USAGE),
    Fault(
        "option-executor",
        [],
        ("--tinyaccel-executor=dask://nowhere",),
        "argument --tinyaccel-executor: 'dask://nowhere': use local, processes, processes:N",
        USAGE,
    ),
    Fault(
        "ini-upgrade-tolerance",
        [write("pyproject.toml", '[tool.pytest.ini_options]\ntinyaccel_upgrade_tolerance = "abc"\n')],
        (),
        "ini tinyaccel_upgrade_tolerance = 'abc': 'abc' is not a number",
        USAGE,
    ),
    Fault(
        "ini-executor",
        [write("pyproject.toml", '[tool.pytest.ini_options]\ntinyaccel_executor = "threads"\n')],
        (),
        "ini tinyaccel_executor = 'threads': 'threads': use local, processes",
        USAGE,
    ),
    Fault(
        "ini-margins",
        [write("pyproject.toml", '[tool.pytest.ini_options]\ntinyaccel_max_regression = "sqnr=1%"\n')],
        (),
        "ini tinyaccel_max_regression = 'sqnr=1%': key 'sqnr': sqnr margin is in dB, e.g. sqnr=1dB",
        USAGE,
    ),
    Fault("option-models-missing", [], ("--tinyaccel-models=nowhere",), "no such folder", USAGE),
    Fault(
        "option-golden-in-models",
        [],
        ("--tinyaccel-golden=models",),
        "goldens must live outside the models folder",
        USAGE,
    ),
    Fault("option-report-suffix", [], ("--tinyaccel-report=out/x.xlsx",), "the suffix must be one of", USAGE),
    Fault(
        "option-report-dir",
        [write("out/keep.txt", "x")],
        ("--tinyaccel-report=out",),
        "the suffix must be one of",
        USAGE,
    ),
    Fault(
        "option-report-is-folder", [write("out.md/keep.txt", "x")], ("--tinyaccel-report=out.md",), "is a folder", USAGE
    ),
    Fault(
        "option-report-under-file",
        [write("afile", "x")],
        ("--tinyaccel-report=afile/x.md",),
        "is not a writable folder",
        USAGE,
    ),
    Fault(
        "option-report-space-form",
        [],
        ("--tinyaccel-report", "/tmp/tinyaccel-profile.md"),
        "write --tinyaccel-report=/tmp/tinyaccel-profile.md",
        USAGE,
    ),
    Fault(
        "option-save-baseline-folder",
        [write("base.json/keep", "x")],
        ("--tinyaccel-save-baseline=base.json",),
        "is a folder",
        USAGE,
    ),
    Fault(
        "option-margin-nan",
        [],
        ("--tinyaccel-max-regression", "ns=nan%,throughput=nan%"),
        "margin must be a finite number",
        USAGE,
    ),
    Fault(
        "option-margin-no-percent",
        [],
        ("--tinyaccel-max-regression", "cycles=5"),
        "cycles margin must be a percentage",
        USAGE,
    ),
    Fault(
        "option-margin-metric", [], ("--tinyaccel-max-regression", "latency=5%"), "key 'latency': unknown metric", USAGE
    ),
    Fault(
        "option-margin-accuracy-percent",
        [],
        ("--tinyaccel-max-regression", "accuracy=1%"),
        "accuracy margin is in points",
        USAGE,
    ),
    Fault("option-upgrade-nan", [], ("--tinyaccel-upgrade-tolerance", "nan"), "give a finite number >= 0", USAGE),
    Fault("option-upgrade-negative", [], ("--tinyaccel-upgrade-tolerance=-1",), "give a finite number >= 0", USAGE),
    Fault("option-target", [], ("--target", "gpu_emu"), "--target 'gpu_emu': not a mode, target or target:mode", USAGE),
    Fault("option-target-mode", [], ("--target", "cpu:sw_emu"), "not a mode, target or target:mode", USAGE),
    Fault("baseline-missing", [], ("--tinyaccel-baseline=base.json",), "no such file", USAGE),
    Fault(
        "baseline-list",
        [write("base.json", "[1, 2, 3]")],
        ("--tinyaccel-baseline=base.json",),
        "not a tinyaccel-profile/3 profile",
        USAGE,
    ),
    Fault(
        "baseline-not-json",
        [write("base.json", "{")],
        ("--tinyaccel-baseline=base.json",),
        "cannot read it as a tinyaccel profile",
        USAGE,
    ),
    Fault(
        "baseline-old-format",
        [write("base.json", _baseline([], "tinyaccel-profile/1"))],
        ("--tinyaccel-baseline=base.json",),
        "save it again with --tinyaccel-save-baseline",
        USAGE,
    ),
    Fault(
        "baseline-rows-type",
        [write("base.json", _baseline({"a": 1}))],
        ("--tinyaccel-baseline=base.json",),
        "expected 'environment' (a table) and 'rows' (a list)",
        USAGE,
    ),
    Fault(
        "baseline-row-shape",
        [write("base.json", _baseline([1, 2]))],
        ("--tinyaccel-baseline=base.json",),
        "a row is not a profile row",
        USAGE,
    ),
    Fault(
        "baseline-row-numbers",
        [write("base.json", _baseline([_row(cycles="fast")]))],
        ("--tinyaccel-baseline=base.json",),
        "a figure is not a number",
        USAGE,
    ),
    # target settings in pyproject.toml
    Fault(
        "settings-cpu-zero",
        [pyproject("[tool.tinyaccel.targets.cpu]\nlatency_runs = 0", replace=True)],
        GOLDEN_FP32,
        "key 'latency_runs': must be at least 1",
        USAGE,
    ),
    Fault(
        "settings-cpu-unknown",
        [pyproject("[tool.tinyaccel.targets.aie]\nspeed = 1")],
        GOLDEN_FP32,
        "key 'speed': unknown key",
        USAGE,
    ),
    Fault(
        "settings-aie-qdq",
        [pyproject('[tool.tinyaccel.targets.aie]\nqdq = "fast"')],
        GOLDEN_FP32,
        "key 'qdq': 'fast' is not one of",
        USAGE,
    ),
    Fault(
        "settings-aie-accumulation",
        [pyproject('[tool.tinyaccel.targets.gemmini]\nint8_accumulation = "wide"')],
        GOLDEN_FP32,
        "key 'int8_accumulation': 'wide' is not one of",
        USAGE,
    ),
    Fault(
        "settings-aie-rounding",
        [pyproject('[tool.tinyaccel.targets.aie]\nrounding = { conv = "up" }')],
        GOLDEN_FP32,
        "key 'rounding': node name = rule",
        USAGE,
    ),
    Fault(
        "settings-unknown-target",
        [pyproject("[tool.tinyaccel.targets.gpu]\nx = 1")],
        GOLDEN_FP32,
        "configures unknown target(s) ['gpu']",
        USAGE,
    ),
    Fault("settings-syntax", [pyproject("[tool.tinyaccel.targets.cpu\nx = ")], GOLDEN_FP32, "pyproject.toml", USAGE),
    Fault(
        "settings-hls4ml-width",
        [pyproject("[tool.tinyaccel.targets.hls4ml]\nint8_width = 0")],
        GOLDEN_FP32,
        "key 'int8_width'",
        USAGE,
    ),
    Fault(
        "command-no-run",
        [pyproject('[tool.tinyaccel.targets.sim]\nkind = "command"\nmodes = ["hw_emu"]')],
        GOLDEN_FP32,
        "[tool.tinyaccel.targets.sim",
        USAGE,
    ),
    Fault(
        "command-string-argv",
        [
            pyproject(
                '[tool.tinyaccel.targets.sim]\nkind = "command"\n[tool.tinyaccel.targets.sim.hw_emu]\nrun = "make all"'
            )
        ],
        GOLDEN_FP32,
        "key 'run'",
        USAGE,
    ),
    Fault(
        "command-placeholder-unset",
        [
            pyproject(
                '[tool.tinyaccel.targets.sim]\nkind = "command"\n'
                '[tool.tinyaccel.targets.sim.hw_emu]\nrun = ["true", "{nope}"]'
            )
        ],
        ("-m", "sim", "-k", "golden and fp32"),
        "placeholder {nope}",
        FAILED,
    ),
    Fault(
        "command-placeholder-syntax",
        [
            pyproject(
                '[tool.tinyaccel.targets.sim]\nkind = "command"\n'
                '[tool.tinyaccel.targets.sim.hw_emu]\nrun = ["sim", "{0}"]'
            )
        ],
        GOLDEN_FP32,
        "must be a plain name",
        USAGE,
    ),
    Fault(
        "command-timeout",
        [
            pyproject(
                '[tool.tinyaccel.targets.sim]\nkind = "command"\n'
                '[tool.tinyaccel.targets.sim.hw_emu]\nrun = ["true"]\ntimeout = -1'
            )
        ],
        GOLDEN_FP32,
        "key 'timeout'",
        USAGE,
    ),
    # the cache
    Fault("cache-is-a-file", [write(".pytest_cache", "a file where the cache folder goes")], GOLDEN_FP32, "", OK),
]


def user_files(root: Path, outputs: tuple[str, ...]) -> dict[str, bytes]:
    """Every file of the project that is not the run's own output. (pytester makes the project
    folder HOME, where ONNX Runtime keeps its own `.cache`: not the user's files either.)"""
    own = (".pytest_cache", ".tinyaccel-cache", "__pycache__", ".cache", *outputs)
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not any(part in own for part in p.relative_to(root).parts)
    }
