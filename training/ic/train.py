"""Train the bundled `ic` model: a ResNet-8-style classifier on scikit-learn's digits.

In the spirit of MLPerf Tiny's image classification model (ResNet-8 on
CIFAR-10): a conv-bn-relu stem, three residual stacks (the second and third
halve the resolution and double the width, with a 1x1 projection shortcut),
global average pooling, one dense layer and a softmax. The widths are scaled
down (8/16/32 instead of 16/32/64) for 8x8 single-channel digits.

Data: `sklearn.datasets.load_digits` (1797 real 8x8 images, 10 classes),
a fixed stratified 70/30 split, pixels scaled to [0, 1].

Run from the repository root:

    python training/ic/train.py

Deterministic: fixed seeds, deterministic algorithms, one thread; a re-run
writes the same data files and prints the same metrics.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "training"))
sys.path.insert(0, str(ROOT))

from export import QUANTIZATION_TOML, bundled_quantization, export_onnx  # noqa: E402  (training/export.py)

from pytest_tinyaccel.quantize import quantize_model  # noqa: E402
from pytest_tinyaccel.runtime import create_session, run_session  # noqa: E402

OUT = ROOT / "models" / "ic"
SEED = 0
EPOCHS = 60
BATCH = 64
LR = 3e-3
WEIGHT_DECAY = 1e-4
CALIB_SAMPLES = 200
WIDTHS = (8, 16, 32)
# Like MLPerf Tiny's targets: a round figure honestly below what the model
# measures (about two points under the lower of fp32 and int8 accuracy).
QUALITY_TARGET = 0.97
LINK = "https://github.com/mlcommons/tiny/blob/master/benchmark/training/image_classification/keras_model.py"


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    # Padding on the Conv itself, so the ONNX graph has no Pad nodes; the BN
    # is folded into the Conv at export.
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    )


class ResidualBlock(nn.Module):
    """conv-bn-relu, conv-bn, add the shortcut, relu.

    Where the shape changes (stride or width), the shortcut is a 1x1 strided
    convolution (a projection), as in MLPerf Tiny's ResNet-8.
    """

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride)
        self.conv2 = conv_bn(cout, cout, 3, 1)
        self.relu = nn.ReLU()
        self.shortcut = (
            nn.Conv2d(cin, cout, 1, stride=stride, bias=True) if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.conv1(x))
        y = self.conv2(y)
        return self.relu(y + self.shortcut(x))


class ResNetDigits(nn.Module):
    def __init__(self, widths: tuple[int, int, int] = WIDTHS, classes: int = 10) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.stem = nn.Sequential(conv_bn(1, w1, 3, 1), nn.ReLU())
        self.stack1 = ResidualBlock(w1, w1, 1)  # 8x8
        self.stack2 = ResidualBlock(w1, w2, 2)  # 4x4
        self.stack3 = ResidualBlock(w2, w3, 2)  # 2x2
        self.pool = nn.AdaptiveAvgPool2d(1)  # -> GlobalAveragePool
        self.fc = nn.Linear(w3, classes)  # -> Gemm
        self.softmax = nn.Softmax(dim=1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stack3(self.stack2(self.stack1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.softmax(self.logits(x))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # (N, 1, 8, 8) in [0, 1]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return (
        np.ascontiguousarray(x_train),
        np.ascontiguousarray(x_test),
        np.ascontiguousarray(y_train),
        np.ascontiguousarray(y_test),
    )


def shift_batch(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Augmentation: shift each image by up to one pixel in each direction (zero fill)."""
    n = x.shape[0]
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=gen)
    dx = torch.randint(0, 3, (n,), generator=gen)
    out = torch.empty_like(x)
    for i in range(n):
        out[i] = padded[i, :, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8]
    return out


def train(model: ResNetDigits, x_train: np.ndarray, y_train: np.ndarray) -> None:
    gen = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps = EPOCHS * ((len(xt) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total, correct, loss_sum = 0, 0, 0.0
        for start in range(0, len(xt), BATCH):
            idx = order[start : start + BATCH]
            xb, yb = shift_batch(xt[idx], gen), yt[idx]
            logits = model.logits(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            total += len(idx)
        if (epoch + 1) % 10 == 0 or epoch == 0:
            print(f"epoch {epoch + 1:3d}  loss {loss_sum / total:.4f}  train acc {correct / total:.4f}")


def ort_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    session = create_session(path)
    probs = run_session(session, {session.get_inputs()[0].name: x})["probs"]
    return float((probs.argmax(1) == y).mean())


def write_manifest(fp32: float, int8: float, n_test: int) -> None:
    text = (
        f"""# Written by training/ic/train.py; re-run it rather than editing by hand.
use_case = "Image Classification"
task = "classification"
metric = "top1"
# Measured on the {n_test}-sample test split with ONNX Runtime: fp32 {fp32:.4f}, int8 {int8:.4f}
# (static QOperator quantization, reduce_range (below), {CALIB_SAMPLES} calibration samples from the train split).
# Target: a round figure about two points below the lower of the two, as MLPerf Tiny sets its targets.
quality_target = {QUALITY_TARGET}
dtypes = ["fp32", "int8"]
ndata = 10
model = "model.onnx"
x_test = "X_test.npy"
y_test = "y_test.npy"
calibration = "X_calib.npy"
labels = "labels.txt"
architecture = "ResNet (digits)"
link = "{LINK}"
"""
        + QUANTIZATION_TOML
    )
    (OUT / "model.toml").write_text(text, encoding="utf-8")


def main() -> None:
    t0 = time.perf_counter()
    seed_everything(SEED)
    x_train, x_test, y_train, y_test = load_data()
    # Calibration: a fixed, stratified choice of training samples (never test data).
    _, x_calib = train_test_split(x_train, test_size=CALIB_SAMPLES, random_state=SEED, stratify=y_train)
    x_calib = np.ascontiguousarray(x_calib, dtype=np.float32)
    print(f"train {len(x_train)}  test {len(x_test)}  calib {len(x_calib)} (from train)")

    model = ResNetDigits()
    params = sum(p.numel() for p in model.parameters())
    print(f"parameters (training graph, incl. BN): {params}")
    train(model, x_train, y_train)
    model.eval()
    with torch.no_grad():
        torch_acc = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    t_train = time.perf_counter() - t0

    OUT.mkdir(parents=True, exist_ok=True)
    onnx_path = OUT / "model.onnx"
    export_onnx(model, torch.from_numpy(x_test[:1]), onnx_path, input_name="input", output_name="probs")
    np.save(OUT / "X_test.npy", x_test)
    np.save(OUT / "y_test.npy", y_test)
    np.save(OUT / "X_calib.npy", x_calib)
    (OUT / "labels.txt").write_text("".join(f"{i}\n" for i in range(10)), encoding="utf-8")

    graph = onnx.load(str(onnx_path)).graph
    onnx_params = sum(int(np.prod(t.dims)) for t in graph.initializer)
    fp32 = ort_accuracy(onnx_path, x_test, y_test)
    with tempfile.TemporaryDirectory(prefix="ic-int8-") as tmp:
        int8_path = Path(tmp) / "model.int8.onnx"
        quantize_model(onnx_path, int8_path, x_calib, bundled_quantization())
        int8 = ort_accuracy(int8_path, x_test, y_test)
        int8_ops = sorted({n.op_type for n in onnx.load(str(int8_path)).graph.node})

    if not QUALITY_TARGET <= min(fp32, int8) - 0.01:
        raise SystemExit(
            f"quality target {QUALITY_TARGET} is not below the measured accuracies ({fp32:.4f}, {int8:.4f})"
        )
    write_manifest(fp32, int8, len(y_test))

    print(f"parameters (exported ONNX, BN folded): {onnx_params}")
    print(f"ops fp32: {sorted({n.op_type for n in graph.node})}")
    print(f"ops int8: {int8_ops}")
    print(f"torch fp32 test accuracy: {torch_acc:.4f}")
    print(f"fp32 test accuracy (ORT): {fp32:.4f} ({round(fp32 * len(y_test))}/{len(y_test)})")
    print(f"int8 test accuracy (ORT): {int8:.4f} ({round(int8 * len(y_test))}/{len(y_test)})")
    print(f"training time {t_train:.1f} s, total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
