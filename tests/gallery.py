"""The user-model gallery: small ONNX models of the kinds users bring, generated here with
onnx.helper and numpy (opset 17, IR version 8), each written as a model folder.

Each model is random-weighted but its data makes the checks meaningful: the labels of a
classifier are the float model's own argmax on the test set, so ONNX Runtime scores 100 %
in fp32 and the quality target (a little lower) catches a target that mixes outputs or
layouts up; the anomaly-detection model's anomalies are inputs of a larger amplitude,
whose reconstruction error is larger. int8 cases use the plugin's own quantization with
the calibration set written beside the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
SAMPLES = 64
CALIBRATION = 32
ANOMALY_GAIN = 2.5
"""Anomalies of the anomaly-detection model: normal inputs of this larger amplitude."""


@dataclass(frozen=True)
class GalleryModel:
    """One gallery entry: how to build it and the manifest lines that describe it."""

    name: str
    build: Callable[[np.random.Generator], onnx.ModelProto]
    input_shape: tuple[int, ...]
    """Per sample."""
    task: str = "classification"
    manifest: str = ""
    """Extra manifest text (e.g. the [outputs] table)."""


class _Graph:
    """Collects nodes and initializers for one model."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def weight(self, name: str, shape: tuple[int, ...], scale: float | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])
        std = scale if scale is not None else 1.0 / np.sqrt(max(fan_in, 1))
        self.inits.append(numpy_helper.from_array(self.rng.normal(0, std, shape).astype(np.float32), name))
        return name

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output.replace(" ", "_") + "_node", **attrs))
        return output

    def model(self, name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model


def _float(name: str, shape: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def two_heads(rng: np.random.Generator) -> onnx.ModelProto:
    """A two-output MLP: a 1-value regression head listed first, the 5-class softmax head second
    (its nodes come first in the file, so position and name disagree); names with spaces and dots."""
    g = _Graph(rng)
    g.node("Gemm", ["sensor window.v1", g.weight("w1", (16, 12)), g.weight("b1", (16,), 0.1)], "h", transB=1)
    g.node("Relu", ["h"], "trunk")
    g.node("Gemm", ["trunk", g.weight("wc", (5, 16), 0.8), g.weight("bc", (5,), 0.1)], "class logits", transB=1)
    g.node("Softmax", ["class logits"], "class.prob", axis=1)
    g.node("Gemm", ["trunk", g.weight("wr", (1, 16)), g.weight("br", (1,), 0.1)], "reg.value", transB=1)
    return g.model(
        "two_heads",
        [_float("sensor window.v1", ["N", 12])],
        [_float("reg.value", ["N", 1]), _float("class.prob", ["N", 5])],
    )


def nhwc_cnn(rng: np.random.Generator) -> onnx.ModelProto:
    """An NHWC image classifier with a dynamic batch: Transpose to NCHW, a Conv that omits its
    optional kernel_shape/strides/pads attributes (valid ONNX), pooling, a dense head."""
    g = _Graph(rng)
    g.node("Transpose", ["image"], "nchw", perm=[0, 3, 1, 2])
    g.node("Conv", ["nchw", g.weight("c1w", (8, 3, 3, 3)), g.weight("c1b", (8,), 0.1)], "c1")  # no kernel_shape
    g.node("Relu", ["c1"], "r1")
    g.node("MaxPool", ["r1"], "p1", kernel_shape=[2, 2], strides=[2, 2])
    g.node(
        "Conv",
        ["p1", g.weight("c2w", (8, 8, 3, 3)), g.weight("c2b", (8,), 0.1)],
        "c2",
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
    )
    g.node("Relu", ["c2"], "r2")
    g.node("GlobalAveragePool", ["r2"], "gap")
    g.node("Flatten", ["gap"], "flat")
    g.node("Gemm", ["flat", g.weight("fw", (6, 8), 1.0), g.weight("fb", (6,), 0.1)], "logits", transB=1)
    g.node("Softmax", ["logits"], "probs", axis=1)
    return g.model("nhwc_cnn", [_float("image", ["batch", 10, 10, 3])], [_float("probs", ["batch", 6])])


def kws_conv1d(rng: np.random.Generator) -> onnx.ModelProto:
    """Keyword spotting on [channels=10 features, 24 frames]: Conv1D + BatchNormalization +
    LeakyRelu, a Sigmoid gate (Conv1D -> Sigmoid, multiplied in), Concat with a 1x1 branch."""
    g = _Graph(rng)
    g.node(
        "Conv", ["mfcc", g.weight("aw", (12, 10, 3)), g.weight("ab", (12,), 0.1)], "a", kernel_shape=[3], pads=[1, 1]
    )
    bn = [
        g.const("bn_s", rng.uniform(0.5, 1.5, 12).astype(np.float32)),
        g.const("bn_b", rng.normal(0, 0.1, 12).astype(np.float32)),
        g.const("bn_m", rng.normal(0, 0.1, 12).astype(np.float32)),
        g.const("bn_v", rng.uniform(0.5, 1.5, 12).astype(np.float32)),
    ]
    g.node("BatchNormalization", ["a", *bn], "a_bn")
    g.node("LeakyRelu", ["a_bn"], "a_act", alpha=0.1)
    g.node(
        "Conv",
        ["mfcc", g.weight("gw", (12, 10, 3)), g.weight("gb", (12,), 0.1)],
        "gate_pre",
        kernel_shape=[3],
        pads=[1, 1],
    )
    g.node("Sigmoid", ["gate_pre"], "gate")
    g.node("Mul", ["a_act", "gate"], "gated")
    g.node("Conv", ["mfcc", g.weight("sw", (4, 10, 1)), g.weight("sb", (4,), 0.1)], "skip", kernel_shape=[1])
    g.node("Concat", ["gated", "skip"], "both", axis=1)
    g.node("GlobalAveragePool", ["both"], "gap")
    g.node("Flatten", ["gap"], "flat")
    g.node("Gemm", ["flat", g.weight("fw", (6, 16), 1.5), g.weight("fb", (6,), 0.1)], "logits", transB=1)
    g.node("Softmax", ["logits"], "probs", axis=1)
    return g.model("kws_conv1d", [_float("mfcc", ["N", 10, 24])], [_float("probs", ["N", 6])])


def dw_separable(rng: np.random.Generator) -> onnx.ModelProto:
    """A depthwise-separable block: 3x3 depthwise Conv (group = channels), 1x1 pointwise Conv."""
    g = _Graph(rng)
    g.node(
        "Conv",
        ["x", g.weight("dw", (4, 1, 3, 3)), g.weight("db", (4,), 0.1)],
        "dwc",
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
        group=4,
    )
    g.node("Relu", ["dwc"], "r1")
    g.node("Conv", ["r1", g.weight("pw", (8, 4, 1, 1)), g.weight("pb", (8,), 0.1)], "pwc", kernel_shape=[1, 1])
    g.node("Relu", ["pwc"], "r2")
    g.node("AveragePool", ["r2"], "pool", kernel_shape=[2, 2], strides=[2, 2])
    g.node("Flatten", ["pool"], "flat")
    g.node("Gemm", ["flat", g.weight("fw", (5, 128), 0.5), g.weight("fb", (5,), 0.1)], "logits", transB=1)
    g.node("Softmax", ["logits"], "probs", axis=1)
    return g.model("dw_separable", [_float("x", ["N", 4, 8, 8])], [_float("probs", ["N", 5])])


def upsample_ae(rng: np.random.Generator) -> onnx.ModelProto:
    """A convolutional autoencoder: Conv, MaxPool down, Resize (nearest, x2) up, Conv back to the
    input's shape. Anomaly detection by reconstruction error."""
    g = _Graph(rng)
    g.node(
        "Conv",
        ["frames", g.weight("e1w", (4, 2, 3, 3)), g.weight("e1b", (4,), 0.05)],
        "e1",
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
    )
    g.node("Relu", ["e1"], "e1r")
    g.node("MaxPool", ["e1r"], "down", kernel_shape=[2, 2], strides=[2, 2])
    scales = g.const("scales", np.array([1, 1, 2, 2], np.float32))
    g.node("Resize", ["down", "", scales], "up", mode="nearest")
    g.node(
        "Conv",
        ["up", g.weight("d1w", (2, 4, 3, 3)), g.weight("d1b", (2,), 0.05)],
        "recon",
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
    )
    return g.model("upsample_ae", [_float("frames", ["N", 2, 8, 8])], [_float("recon", ["N", 2, 8, 8])])


def lstm_cls(rng: np.random.Generator) -> onnx.ModelProto:
    """A sequence classifier: [N, 8 steps, 4 features] -> time-major -> LSTM(8) -> last hidden
    state -> dense -> softmax."""
    g = _Graph(rng)
    hidden = 8
    g.node("Transpose", ["seq"], "time_major", perm=[1, 0, 2])
    w = g.weight("lw", (1, 4 * hidden, 4), 0.5)
    r = g.weight("lr", (1, 4 * hidden, hidden), 0.3)
    b = g.weight("lb", (1, 8 * hidden), 0.1)
    g.nodes.append(helper.make_node("LSTM", ["time_major", w, r, b], ["", "h_last"], name="lstm", hidden_size=hidden))
    g.node("Squeeze", ["h_last", g.const("axis0", np.array([0], np.int64))], "h")
    g.node("Gemm", ["h", g.weight("fw", (4, hidden), 2.0), g.weight("fb", (4,), 0.1)], "logits", transB=1)
    g.node("Softmax", ["logits"], "probs", axis=1)
    return g.model("lstm_cls", [_float("seq", ["N", 8, 4])], [_float("probs", ["N", 4])])


GALLERY = {
    m.name: m
    for m in (
        GalleryModel(
            "two_heads",
            two_heads,
            (12,),
            manifest=(
                '[outputs."class.prob"]\nrole = "probabilities"\n'
                '[outputs."reg.value"]\nrole = "auxiliary"\natol = 1e-4\n'
            ),
        ),
        GalleryModel("nhwc_cnn", nhwc_cnn, (10, 10, 3)),
        GalleryModel("kws_conv1d", kws_conv1d, (10, 24)),
        GalleryModel("dw_separable", dw_separable, (4, 8, 8)),
        GalleryModel(
            "upsample_ae",
            upsample_ae,
            (2, 8, 8),
            task="anomaly_detection",
            manifest='[outputs.recon]\nrole = "reconstruction"\n[outputs.recon.hls4ml.int8]\natol = 0.5\n',
        ),
        GalleryModel("lstm_cls", lstm_cls, (8, 4)),
    )
}


def _session(model: onnx.ModelProto):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _balance(model: onnx.ModelProto, x: np.ndarray, spread: float = 4.0) -> None:
    """Rescale the dense layer in front of the Softmax so that its logits are centred per class
    with standard deviation `spread` on `x`: every class is predicted for some samples, and
    the float model is confident but not saturated (in place)."""
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    gemm = next(n for n in model.graph.node if softmax.input[0] in n.output)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(helper.make_tensor_value_info(softmax.input[0], TensorProto.FLOAT, None))
    session = _session(probe)
    logits = session.run([softmax.input[0]], {session.get_inputs()[0].name: x})[0]
    inits = {t.name: t for t in model.graph.initializer}
    w, b = (numpy_helper.to_array(inits[name]) for name in gemm.input[1:3])
    scale = spread / max(float(logits.std()), 1e-6)
    b = (b - logits.mean(0)) * scale
    for name, value in zip(gemm.input[1:3], (w * scale, b), strict=False):
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))


def write(folder: Path, entry: GalleryModel, seed: int = 0) -> Path:
    """Write `entry` as a model folder (model.onnx, data, model.toml) under `folder`; returns it."""
    rng = np.random.default_rng(seed)
    model = entry.build(rng)
    target = folder / entry.name
    target.mkdir(parents=True)
    x = rng.normal(0, 1, (SAMPLES, *entry.input_shape)).astype(np.float32)
    if entry.task == "classification":
        _balance(model, x)
    onnx.save(model, str(target / "model.onnx"))
    calibration = rng.normal(0, 1, (CALIBRATION, *entry.input_shape)).astype(np.float32)
    if entry.task != "classification":  # calibrated on the range the test data has, anomalies included
        calibration[1::2] *= ANOMALY_GAIN
    np.save(target / "X_calib.npy", calibration)
    session = _session(model)
    name = session.get_inputs()[0].name
    if entry.task == "classification":
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {name: x}), strict=False))
        probs = next(v for k, v in outputs.items() if "prob" in k)
        np.save(target / "y_test.npy", probs.argmax(1).astype(np.int64))
        metric, quality = "top1", 0.75
    else:
        anomalous = np.arange(SAMPLES) % 2 == 1
        x[anomalous] *= ANOMALY_GAIN
        np.save(target / "y_test.npy", anomalous.astype(np.int64))
        metric, quality = "auc", 0.8
    np.save(target / "X_test.npy", x)
    (target / "model.toml").write_text(
        f'use_case = "Gallery {entry.name}"\ntask = "{entry.task}"\nmetric = "{metric}"\nquality_target = {quality}\n'
        f'calibration = "X_calib.npy"\nndata = 8\nsamples = {SAMPLES}\narchitecture = "{entry.name}"\n'
        f'link = "tests/gallery.py"\n[quantization]\nreduce_range = true\n{entry.manifest}'
    )
    return target
