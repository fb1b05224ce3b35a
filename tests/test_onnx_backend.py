"""The emulator as a certified ONNX backend: the ONNX project's own backend node tests, from the onnx it installs.

onnx wheels no longer ship node-test data; they ship the generators that make it
(onnx/backend/test/case/node: each op's examples, expected outputs computed by
onnx's reference code). `collect_testcases` runs them when this module is
collected (about 5 s per process; onnx's own BackendTest does the same), so the
tests are always those of the installed onnx, with no download. Each runs
through `EmulatorBackend` exactly as `onnx.backend.test.BackendTest` runs a
backend: prepare the model, run every data set, compare with
`Runner.assert_similar_outputs` at the test case's tolerances (rtol 1e-3,
atol 1e-7); one pytest test per node test.

Every test the emulator does not pass is listed in EXPECTED_FAILURES with its
reason and is an expected failure only when the emulator refuses it at load as
the reason says: a listed test that starts passing fails the run (remove it from
the list), and so does one that fails in any other way (a crash, a refusal only
at run time, a wrong result).
The list is written for the locked onnx (ONNX_VERSION); another onnx fails
`test_node_tests_are_those_of_the_locked_onnx` until the list is reviewed.
"""

from __future__ import annotations

import re
import sys
import warnings

import onnx
import pytest
from onnx import numpy_helper
from onnx.backend.test.case.node import collect_testcases
from onnx.backend.test.runner import Runner

from pytest_tinyaccel.emulator import UnsupportedOpError, UnsupportedTypeError
from pytest_tinyaccel.emulator.backend import EmulatorBackend

ONNX_VERSION, NODE_TEST_COUNT = "1.23.2", 1884
"""The onnx the expected-failure list was made with (constraints.txt), and how many node tests it generates."""

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the generators' own overflow warnings (casts to narrow types)
    CASES = {case.name: case for case in collect_testcases(None)}
NODE_TESTS = sorted(CASES)
pytestmark = pytest.mark.filterwarnings(  # NumPy's notes on the NaN and infinity the node tests feed on purpose
    "ignore:invalid value encountered:RuntimeWarning", "ignore:divide by zero encountered:RuntimeWarning"
)

# ----------------------------------------------------------------------------- the expected failures, by reason
# reason -> (what the emulator must raise, full-match patterns of test names). Refusals are raised by
# EmulatorBackend.prepare (Graph.load), never during a run. Keep the list as short as the emulator allows.

TYPES = (
    "element type the emulator does not run (bfloat16, float8, float4, int2/uint2, int4/uint4, string): refused at "
    "load, type named"
)
SEQUENCES = "sequence, optional or map values: refused at load (the emulator runs tensors only)"
TRAINING = "training: optimizers, losses, training-mode Dropout/BatchNormalization (inference only)"
RANDOM = "random outputs (Bernoulli, RandomUniformLike): nothing to compare bit for bit"
CONTROL_FLOW = "control flow with subgraphs (If, Loop, Scan): not an accelerator dataflow graph"
OPS = (
    "op not supported by the emulator (vision/signal/text/ML ops, and the transformer and state-space ops of opsets "
    "23-28, outside tiny networks)"
)
FEATURES = "form of a supported op not supported: 3-D pooling, MaxPool Indices, QLinearConv with run-time scales"

_NARROW = r"(BFLOAT16|FLOAT8E4M3FN(UZ)?|FLOAT8E5M2(FNUZ)?|FLOAT8E8M0|FLOAT4E2M1|U?INT[24]|STRING)"
"""ONNX type names (in cast test names) of the element types the emulator refuses."""
_OP = r"(?!\w*(_expanded(_ver\d+)?|bf16(_expanded)?)$)(_\w+)?"
"""The tests of one op, except its expanded graphs (which pass, made of other ops) and its bfloat16 ones (TYPES)."""

EXPECTED_FAILURES: dict[str, tuple[type[BaseException], tuple[str, ...]]] = {
    TYPES: (
        UnsupportedTypeError,
        (
            rf"test_cast(like)?_(no_saturate_|e8m0_)?(FLOAT|FLOAT16)_to_{_NARROW}(_expanded)?",
            rf"test_cast(like)?_(e8m0_)?{_NARROW}_to_\w+",
            r"test_(de)?quantizelinear_(e4m3fn|e5m2|u?int[24]|float4e2m1)\w*",
            r"test_(?!unique_)\w+_(bfloat16|bf16)(_\w+)?",  # other ops on bfloat16 tensors (Unique: OPS)
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
            r"test_scan9?_(sum|multi_state|scalar)",
            r"test_range_(float|float16|int32)_type_(positive|negative)_delta_expanded",  # Loop
            r"test_linear_attention_\w+_expanded",  # Scan
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
            rf"test_(attention|causal_conv_with_state|rotary_embedding|rms_normalization){_OP}",
            rf"test_flexattention{_OP}",
            rf"test_linear_attention{_OP}",
            r"test_tensorscatter\w*",
            r"test_swiglu(_alpha|_float16)?(_expanded)?",  # the expanded graphs use Swish
            r"test_swish",
            r"test_bitcast_\w+",
            r"test_cumprod_\w+",
            r"test_(l[12]normalization_axis_\w+|lpnormalization_default)",
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


def _value(value):
    """A data-set value as a backend receives it: tensors the generators hold as TensorProto (types NumPy has no
    dtype of its own for) as arrays, as onnx's runner does; sequences element by element."""
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value


def data_sets(name: str) -> list[tuple[list, list]]:
    """(inputs, expected outputs) of every data set of a node test, in graph order."""
    return [([_value(v) for v in inputs], [_value(v) for v in outputs]) for inputs, outputs in CASES[name].data_sets]


# ----------------------------------------------------------------------------- the node tests


def test_node_tests_are_those_of_the_locked_onnx() -> None:
    """The expected-failure list below is exact for one onnx release: another one fails here (never silently)
    until its node tests have been run and the list reviewed."""
    assert (onnx.__version__, len(NODE_TESTS)) == (ONNX_VERSION, NODE_TEST_COUNT), (
        f"onnx {onnx.__version__} generates {len(NODE_TESTS)} node tests; EXPECTED_FAILURES was made with onnx "
        f"{ONNX_VERSION} ({NODE_TEST_COUNT}): run this module, review the list, then update ONNX_VERSION"
    )


@pytest.mark.parametrize("name", NODE_TESTS)
def test_onnx_node(name: str) -> None:
    """A listed test must be refused at load exactly as its reason says (else it fails: DID NOT RAISE, or the
    other exception), then it is an expected failure; an unlisted one runs and compares its outputs.

    The check is made here rather than by a strict xfail marker: pytest formats the traceback of every failure
    a marker expects (about 80 ms each, most of this module's time), and an imperative xfail has none."""
    case = CASES[name]
    listed = expected_failure(name)
    if listed is not None:
        reason, raises = listed
        with pytest.raises(raises):
            EmulatorBackend.prepare(case.model)
        pytest.xfail(reason)
    rep = EmulatorBackend.prepare(case.model)
    for inputs, expected in data_sets(name):
        try:
            outputs = rep.run(inputs)
        except UnsupportedOpError as exc:
            raise RuntimeError(f"refused while running, not when loading: {exc}") from exc
        Runner.assert_similar_outputs(expected, outputs, rtol=case.rtol, atol=case.atol, model_dir=name)


def test_expected_failure_list_is_exact():
    """Every pattern names existing tests, and no test is listed under two reasons."""
    for reason, (_, patterns) in EXPECTED_FAILURES.items():
        for pattern in patterns:
            assert any(re.fullmatch(pattern, n) for n in NODE_TESTS), f"{pattern!r} ({reason}) matches no node test"
    for name in NODE_TESTS:
        reasons = [r for r, (_, ps) in EXPECTED_FAILURES.items() if any(re.fullmatch(p, name) for p in ps)]
        assert len(reasons) <= 1, f"{name} is listed under {reasons}"


def test_tiny_network_ops_fail_only_for_types_and_training():
    """Every node test of the tiny-network ops passes unless it needs an unsupported type (a sequence:
    test_split_to_sequence_*) or training mode: at least 90 % of the tests that need neither pass."""
    tests = [n for n in NODE_TESTS if any(re.match(rf"test_{stem}(_|$)", n) for stem in TINY_NETWORK_OPS)]
    failing = {n: found[0] for n in tests if (found := expected_failure(n)) is not None}
    assert set(failing.values()) <= {TYPES, SEQUENCES, TRAINING}, failing
    eligible = [n for n in tests if failing.get(n) not in (TYPES, SEQUENCES, TRAINING)]
    passing = [n for n in eligible if n not in failing]
    assert len(tests) >= 250 and len(passing) >= 0.9 * len(eligible), (len(tests), len(eligible), len(passing))


def test_a_listed_test_must_be_refused_as_its_reason_says(monkeypatch) -> None:
    """The discipline bites: a listed test that passes fails (DID NOT RAISE), and so does one refused with another
    exception than its reason's; only the listed refusal is an expected failure."""
    monkeypatch.setattr(sys.modules[__name__], "expected_failure", lambda name: ("listed", UnsupportedOpError))
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        test_onnx_node("test_abs")
    with pytest.raises(pytest.xfail.Exception, match="listed"):
        test_onnx_node("test_bitcast_int8_to_uint8")
    monkeypatch.setattr(sys.modules[__name__], "expected_failure", lambda name: ("listed", UnsupportedTypeError))
    with pytest.raises(UnsupportedOpError, match="op type BitCast"):
        test_onnx_node("test_bitcast_int8_to_uint8")
