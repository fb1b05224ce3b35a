"""The emulator as a certified ONNX backend: the ONNX project's own backend node tests.

The 1,288 node tests of onnx 1.17.0 (the last wheel that ships them; see
tests/tools/onnx_node_data.py) run through `EmulatorBackend` exactly as
`onnx.backend.test.BackendTest` runs a backend: prepare the model, run every
test_data_set, compare with `Runner.assert_similar_outputs` (rtol 1e-3, atol
1e-7). onnx 1.23 generates its node tests in Python instead, so BackendTest
cannot be pointed at the 1.17.0 data; this module is that runner, one pytest
test per node test.

Every test the emulator does not pass is listed in EXPECTED_FAILURES with its
reason, as a strict xfail: a listed test that starts passing fails the run
(remove it from the list), and a listed test that fails in any other way than
its reason says (a crash, a refusal only at run time, a wrong result) fails too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from onnx.backend.test.runner import Runner
from tools.onnx_node_data import FETCH_COMMAND, NodeDataMissing, node_data_dir

from pytest_tinyaccel.emulator import UnsupportedOpError, UnsupportedTypeError
from pytest_tinyaccel.emulator.backend import EmulatorBackend

try:
    DATA: Path | None = node_data_dir(fetch=os.environ.get("CI", "").lower() == "true")
    MISSING = ""
except NodeDataMissing as exc:
    DATA, MISSING = None, str(exc)
NODE_TESTS = sorted(p.name for p in DATA.iterdir() if p.is_dir()) if DATA else []

# ----------------------------------------------------------------------------- the expected failures, by reason
# reason -> (what the emulator must raise, full-match patterns of test names). Refusals are raised by
# EmulatorBackend.prepare (Graph.load), never during a run. Keep the list as short as the emulator allows.

TYPES = "element type the emulator does not run (bfloat16, float8, int4/uint4, string): refused at load, type named"
SEQUENCES = "sequence, optional or map values: refused at load (the emulator runs tensors only)"
TRAINING = "training: optimizers, losses, training-mode Dropout/BatchNormalization (inference only)"
RANDOM = "random outputs (Bernoulli, RandomUniformLike): nothing to compare bit for bit"
CONTROL_FLOW = "control flow with subgraphs (If, Loop, Scan): not an accelerator dataflow graph"
OPS = "op not supported by the emulator (vision/signal/text/ML ops outside tiny networks)"
FEATURES = "form of a supported op not supported: 3-D pooling, MaxPool Indices, QLinearConv with run-time scales"
ERRATUM = (
    "onnx 1.17.0 data erratum: the expected int8 output wraps around (-236 -> 20) where the spec saturates "
    "(-128); ONNX Runtime and onnx >= 1.18's own test case give -128, as the emulator does"
)

EXPECTED_FAILURES: dict[str, tuple[type[BaseException], tuple[str, ...]]] = {
    TYPES: (
        UnsupportedTypeError,
        (
            r"test_cast_(no_saturate_)?(FLOAT|FLOAT16)_to_(BFLOAT16|FLOAT8E4M3FN(UZ)?|FLOAT8E5M2(FNUZ)?|U?INT4|STRING)",
            r"test_cast_(BFLOAT16|FLOAT8E4M3FN(UZ)?|FLOAT8E5M2(FNUZ)?|U?INT4|STRING)_to_\w+",
            r"test_castlike_(FLOAT_to_(BFLOAT16|FLOAT8\w+|STRING)|(BFLOAT16|FLOAT8\w+|STRING)_to_FLOAT)(_expanded)?",
            r"test_(de)?quantizelinear_(e4m3fn|e5m2|int4|uint4)\w*",
            r"test_equal_string\w*",
            r"test_string_(concat|split)\w*",
            r"test_strnormalizer_\w+",
            r"test_regex_full_match_\w+",
            r"test_ai_onnx_ml_label_encoder_\w+",
        ),
    ),
    SEQUENCES: (
        UnsupportedOpError,
        (
            r"test_identity_(opt|sequence)",
            r"test_if_(opt|seq)",
            r"test_loop13_seq",
            r"test_loop16_seq_none",
            r"test_optional_\w+",
            r"test_sequence_\w+",
            r"test_split_to_sequence_\w+",
        ),
    ),
    TRAINING: (
        UnsupportedOpError,
        (
            r"test_training_dropout\w*",
            r"test_batchnorm_(epsilon|example)_training_mode",
            r"test_(adagrad|adam|momentum|nesterov_momentum)(_multiple)?",
            r"test_nllloss_(?!\w*_expanded$)\w+",  # NegativeLogLikelihoodLoss (the expanded graphs pass)
            r"test_sce_\w+",  # SoftmaxCrossEntropyLoss (its expanded graphs use NegativeLogLikelihoodLoss)
        ),
    ),
    RANDOM: (UnsupportedOpError, (r"test_bernoulli\w*",)),
    CONTROL_FLOW: (
        UnsupportedOpError,
        (
            r"test_if",
            r"test_loop11",
            r"test_scan9?_sum",
            r"test_range_(float_type_positive|int32_type_negative)_delta_expanded",  # Loop
            r"test_affine_grid_(2d|3d)(_align_corners)?_expanded",  # If
        ),
    ),
    OPS: (
        UnsupportedOpError,
        (
            r"test_gridsample\w*",
            r"test_affine_grid_(2d|3d)(_align_corners)?",
            r"test_roialign_\w+",
            r"test_nonmaxsuppression_\w+",
            r"test_(basic_)?deform_conv_\w+",
            r"test_col2im\w*",
            r"test_maxunpool_\w+",
            r"test_lppool_\w+",
            r"test_center_crop_pad_(crop|pad|crop_and_pad|crop_axes_chw|crop_axes_hwc|crop_negative_axes_hwc)",
            r"test_image_decoder_\w+",
            r"test_dft\w*",
            r"test_stft\w*",
            r"test_(blackman|hamming|hann)window(_symmetric)?",
            r"test_melweightmatrix",
            r"test_tfidfvectorizer_\w+",
            r"test_ai_onnx_ml_(array_feature_extractor|binarizer|tree_ensemble_\w+)",
            r"test_unique_\w+",
        ),
    ),
    FEATURES: (
        UnsupportedOpError,
        (
            r"test_(average|max)pool_3d_\w+",
            r"test_maxpool_with_argmax_2d_precomputed_(pads|strides)",
            r"test_qlinearconv",
        ),
    ),
    ERRATUM: (AssertionError, (r"test_qlinearmatmul_(2D|3D)_int8_float(16|32)",)),
}

TINY_NETWORK_OPS = (
    "resize split convtranspose lstm gru layer_normalization gelu erf matmulinteger convinteger hardswish where "
    "castlike expand batchnorm reduce_mean reduce_max squeeze unsqueeze clip pad constant_pad edge_pad reflect_pad "
    "wrap_pad quantizelinear dequantizelinear qlinearmatmul"
).split()
"""The tiny-network op list (the ops small MLPerf Tiny-style networks use), as node-test name stems (test_<stem>...)."""


def expected_failure(name: str) -> tuple[str, type[BaseException]] | None:
    """(reason, exception) when `name` is listed, else None."""
    for reason, (raises, patterns) in EXPECTED_FAILURES.items():
        if any(re.fullmatch(p, name) for p in patterns):
            return reason, raises
    return None


def _param(name: str):
    found = expected_failure(name)
    if found is None:
        return name
    reason, raises = found
    return pytest.param(name, marks=pytest.mark.xfail(raises=raises, strict=True, reason=reason))


def _load(path: Path, type_proto: onnx.TypeProto):
    """One input_*.pb / output_*.pb, as onnx's Runner reads it (tensor, sequence or optional)."""
    data = path.read_bytes()
    if type_proto.HasField("sequence_type"):
        sequence = onnx.SequenceProto()
        sequence.ParseFromString(data)
        return numpy_helper.to_list(sequence)
    if type_proto.HasField("optional_type"):
        optional = onnx.OptionalProto()
        optional.ParseFromString(data)
        return numpy_helper.to_optional(optional)
    tensor = onnx.TensorProto()
    tensor.ParseFromString(data)
    return numpy_helper.to_array(tensor)


def data_sets(case: Path, model: onnx.ModelProto) -> list[tuple[list, list]]:
    """(inputs, expected outputs) of every test_data_set_* of a node test, in graph order."""
    sets = []
    for folder in sorted(case.glob("test_data_set_*")):
        inputs = [
            _load(folder / f"input_{i}.pb", model.graph.input[i].type)
            for i in range(len(list(folder.glob("input_*.pb"))))
        ]
        outputs = [
            _load(folder / f"output_{i}.pb", model.graph.output[i].type)
            for i in range(len(list(folder.glob("output_*.pb"))))
        ]
        sets.append((inputs, outputs))
    return sets


# ----------------------------------------------------------------------------- the node tests


def test_node_test_data_is_available():
    """Without the data the node tests cannot run: fail (never skip) and say how to fetch it."""
    assert DATA is not None, MISSING
    assert len(NODE_TESTS) == 1288, f"{DATA} holds {len(NODE_TESTS)} node tests, expected 1288; {FETCH_COMMAND}"


@pytest.mark.parametrize("name", [_param(n) for n in NODE_TESTS])
def test_onnx_node(name: str) -> None:
    assert DATA is not None
    case = DATA / name
    model = onnx.load(str(case / "model.onnx"))
    rep = EmulatorBackend.prepare(model)  # a refusal (UnsupportedOpError) is raised here, at load
    for inputs, expected in data_sets(case, model):
        try:
            outputs = rep.run(inputs)
        except UnsupportedOpError as exc:
            raise RuntimeError(f"refused while running, not when loading: {exc}") from exc
        Runner.assert_similar_outputs(expected, outputs, rtol=1e-3, atol=1e-7, model_dir=str(case))


@pytest.mark.skipif(DATA is None, reason="no node-test data (test_node_test_data_is_available fails)")
def test_expected_failure_list_is_exact():
    """Every pattern names existing tests, and no test is listed under two reasons."""
    for reason, (_, patterns) in EXPECTED_FAILURES.items():
        for pattern in patterns:
            assert any(re.fullmatch(pattern, n) for n in NODE_TESTS), f"{pattern!r} ({reason}) matches no node test"
    for name in NODE_TESTS:
        reasons = [r for r, (_, ps) in EXPECTED_FAILURES.items() if any(re.fullmatch(p, name) for p in ps)]
        assert len(reasons) <= 1, f"{name} is listed under {reasons}"


@pytest.mark.skipif(DATA is None, reason="no node-test data (test_node_test_data_is_available fails)")
def test_tiny_network_ops_fail_only_for_types_and_training():
    """Every node test of the tiny-network ops passes unless it needs an unsupported type (a sequence:
    test_split_to_sequence_*) or training mode, or its expected output is wrong: at least 90 % of the tests that
    need neither pass."""
    tests = [n for n in NODE_TESTS if any(re.match(rf"test_{stem}(_|$)", n) for stem in TINY_NETWORK_OPS)]
    failing = {n: found[0] for n in tests if (found := expected_failure(n)) is not None}
    assert set(failing.values()) <= {TYPES, SEQUENCES, TRAINING, ERRATUM}, failing
    eligible = [n for n in tests if failing.get(n) not in (TYPES, SEQUENCES, TRAINING)]
    passing = [n for n in eligible if n not in failing]
    assert len(tests) >= 250 and len(passing) >= 0.9 * len(eligible), (len(tests), len(eligible), len(passing))


@pytest.mark.skipif(DATA is None, reason="no node-test data (test_node_test_data_is_available fails)")
@pytest.mark.parametrize("name", [n for n in NODE_TESTS if expected_failure(n) and expected_failure(n)[0] == ERRATUM])
def test_erratum_tests_match_onnxruntime(name: str) -> None:
    """Where the stored expected output is wrong, ONNX Runtime agrees with the emulator, bit for bit."""
    assert DATA is not None
    model = onnx.load(str(DATA / name / "model.onnx"))
    ((inputs, expected),) = data_sets(DATA / name, model)
    feed = {v.name: x for v, x in zip(model.graph.input, inputs, strict=False)}
    options = ort.SessionOptions()
    options.log_severity_level = 3
    want = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feed)
    got = EmulatorBackend.prepare(model).run(inputs)
    np.testing.assert_array_equal(got[0], want[0])
    assert not np.array_equal(got[0], expected[0])
