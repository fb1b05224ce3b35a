"""Train the bundled `kws` model: MLPerf Tiny's DS-CNN on espeak-ng keywords (see synth.py).

Steps (each timed, the numbers go to results.json):

1. features — load `training/kws/data/{X,y}_train.npy` and
   `models/kws/{X,y}_test.npy` if present, otherwise synthesize them with
   `synth.generate` (espeak-ng; deterministic for a seed). `--regenerate`
   always synthesizes and reports whether the result equals the stored files.
   The 24000 training samples (23.5 MB as float16) are too big to commit, so
   `training/kws/data/` is git-ignored and a fresh checkout regenerates them
   (about 7-9 minutes on two shared cores).
2. training — DS-CNN (below) in PyTorch on the training split only; a fixed
   schedule, no early stopping and no model selection, so the test speakers
   play no part in training.
3. export — `training/export.py:export_onnx` (BatchNormalization folded), with a
   Softmax appended: input `input` (N, 1, 49, 10), output `probs` (N, 12).
4. evaluation — top-1 with ONNX Runtime on exactly the stored float16 test
   features (upcast to float32), for the fp32 model and for the int8 model that
   `pytest_tinyaccel.quantize.quantize_model` makes with the manifest's default
   settings and `X_calib.npy` (200 training samples, stratified by class).
5. manifest — `models/kws/model.toml`, its quality target kept below both
   measured accuracies (MLPerf's 90 % when both clear it by a point).

The architecture follows MLPerf Tiny's keras_model.py (DS-CNN): a 10x4
stride-2 convolution to 64 channels, four depthwise-separable blocks (3x3
depthwise + BN + ReLU, 1x1 pointwise 64 + BN + ReLU), average pooling over the
whole 25x5 map, dropout, a dense layer to 12 classes and softmax. In NCHW with
symmetric convolution padding (5, 1) instead of TensorFlow's asymmetric "same"
padding (4/5 rows): same 25x5 output, and no Pad node in the ONNX graph.

Usage: ``python training/kws/train.py`` (needs torch; espeak-ng only to
synthesize data). One torch thread by default (`--threads`): the
model is small and a shared machine makes extra threads spin rather than help.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "training"), str(ROOT)]

from export import QUANTIZATION_TOML, bundled_quantization, export_onnx  # noqa: E402

from pytest_tinyaccel.data import file_sha256  # noqa: E402
from pytest_tinyaccel.quantize import quantize_model  # noqa: E402
from pytest_tinyaccel.runtime import create_session, run_session  # noqa: E402

LABELS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "silence", "unknown")
MODEL_DIR = ROOT / "models" / "kws"
DATA_DIR = HERE / "data"
MLPERF_TARGET = 0.90
LINK = "https://github.com/mlcommons/tiny/blob/master/benchmark/training/keyword_spotting/keras_model.py"


class DSCNN(nn.Module):
    """MLPerf Tiny DS-CNN: (N, 1, 49, 10) MFCC -> (N, 12) logits."""

    def __init__(self, classes: int = 12, width: int = 64, blocks: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(1, width, (10, 4), stride=2, padding=(5, 1), bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Dropout(0.2),
        ]
        for _ in range(blocks):
            layers += [
                nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.Conv2d(width, width, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d((25, 5))
        self.dropout = nn.Dropout(0.4)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.fc(self.dropout(torch.flatten(x, 1)))


class WithSoftmax(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


def load_or_generate(
    split: str, count: int, seed: int, x_path: Path, y_path: Path, regenerate: bool
) -> tuple[np.ndarray, np.ndarray, dict]:
    info: dict = {"split": split}
    if x_path.exists() and y_path.exists() and not regenerate:
        x, y = np.load(x_path, allow_pickle=False), np.load(y_path, allow_pickle=False)
        info.update(source="stored", count=len(x))
        return x, y, info
    import synth

    started = time.perf_counter()
    x, y, meta = synth.generate(split, count, seed)
    info.update(source="synthesized", count=count, seconds=round(time.perf_counter() - started, 1))
    if x_path.exists() and y_path.exists():
        same = np.array_equal(np.load(x_path), x) and np.array_equal(np.load(y_path), y)
        info["identical_to_stored"] = bool(same)
        print(f"[train] regenerated {split} features {'match' if same else 'DIFFER FROM'} the stored files", flush=True)
    x_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(x_path, x)
    np.save(y_path, y)
    if split == "test":
        info["test_accents"], info["test_variants"] = list(synth.TEST_ACCENTS), list(synth.TEST_VARIANTS)
    info["meta"] = meta
    return x, y, info


def train(x: np.ndarray, y: np.ndarray, seed: int, epochs: int, batch: int, lr: float) -> tuple[nn.Module, list[dict]]:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    net = DSCNN(len(LABELS))
    xt = torch.from_numpy(x.astype(np.float32))
    yt = torch.from_numpy(y)
    steps = epochs * math.ceil(len(x) / batch)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.15)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    order_rng = np.random.default_rng(seed)
    history = []
    for epoch in range(epochs):
        net.train()
        started = time.perf_counter()
        total, correct, loss_sum = 0, 0, 0.0
        for idx in np.array_split(order_rng.permutation(len(x)), math.ceil(len(x) / batch)):
            xb, yb = xt[idx], yt[idx]
            xb = spec_augment(xb, order_rng)
            logits = net(xb)
            loss = loss_fn(logits, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            total += len(idx)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": round(loss_sum / total, 4),
                "train_acc": round(correct / total, 4),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        print(
            f"[train] epoch {epoch + 1:3d}/{epochs}  loss {loss_sum / total:.4f}  train acc {correct / total:.4f}  "
            f"({history[-1]['seconds']} s)",
            flush=True,
        )
    net.eval()
    return net, history


def spec_augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Training-only masking (SpecAugment-like), drawn from `rng` so it is deterministic:
    per sample, a block of up to 6 frames is replaced by the clip's mean frame and up
    to 2 cepstral coefficients above c0 are zeroed."""
    x = x.clone()
    n = x.shape[0]
    t0, tw = rng.integers(0, 49, n), rng.integers(0, 7, n)
    f0, fw = rng.integers(1, 10, n), rng.integers(0, 3, n)
    mean_frame = x.mean(dim=2, keepdim=True)
    for i in range(n):
        x[i, :, t0[i] : t0[i] + tw[i], :] = mean_frame[i]
        x[i, :, :, f0[i] : f0[i] + fw[i]] = 0.0
    return x


def top1(model_path: Path, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    session = create_session(model_path)
    probs = run_session(session, {"input": x.astype(np.float32)})["probs"]
    pred = probs.argmax(axis=1)
    return float((pred == y).mean()), pred


def calibration_subset(y: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` training indices, as even over the classes as possible, in shuffled order."""
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.nonzero(y == c)[0]) for c in range(len(LABELS))]
    picks = [idx for rank in range(count) for idx in (p[rank] for p in per_class if rank < len(p))][:count]
    return np.array(sorted(picks, key=lambda i: rng.random()))


def breakdown(pred: np.ndarray, y: np.ndarray, meta: list[dict], key: str) -> dict[str, float]:
    groups: dict[str, list[bool]] = {}
    for p, t, m in zip(pred, y, meta):
        if key in m:
            groups.setdefault(str(m[key]), []).append(bool(p == t))
    return {k: round(float(np.mean(v)), 4) for k, v in sorted(groups.items())}


HLS4ML_TOML = """
[targets.hls4ml]
# hls4ml's C simulation of this DS-CNN runs at about 80 ms per sample on one core (fixed-point
# C++): accuracy on hls4ml uses the first 300 test samples (fp32 92.0 %, int8 92.3 %, against
# 93.1 % / 93.0 % on all 1000); the golden check is unchanged.
samples = 300
"""


def write_manifest(path: Path, fp32: float, int8: float, n_test: int) -> float:
    worst = min(fp32, int8)
    target = MLPERF_TARGET if worst >= MLPERF_TARGET + 0.01 else math.floor((worst - 0.01) * 100) / 100
    path.write_text(
        "# Keyword spotting: MLPerf Tiny's DS-CNN trained on espeak-ng speech synthesized by\n"
        "# training/kws/synth.py (test speakers held out); trained by training/kws/train.py.\n"
        'use_case = "Keyword Spotting"\n'
        'task = "classification"\n'
        'metric = "top1"\n'
        f"# Measured by train.py with ONNX Runtime on the {n_test} stored test samples:\n"
        f"# fp32 top-1 {fp32:.4f}, int8 top-1 {int8:.4f} (quantize_model, reduce_range (below), X_calib.npy).\n"
        f"# MLPerf Tiny's closed-division target is {MLPERF_TARGET:.2f}; the target stays below both numbers.\n"
        f"quality_target = {target:.2f}\n"
        'dtypes = ["fp32", "int8"]\n'
        "ndata = 10\n"
        'model = "model.onnx"\n'
        'x_test = "X_test.npy"\n'
        'y_test = "y_test.npy"\n'
        'calibration = "X_calib.npy"\n'
        'labels = "labels.txt"\n'
        'architecture = "DS-CNN"\n'
        f'link = "{LINK}"\n' + QUANTIZATION_TOML + HLS4ML_TOML,
        encoding="utf-8",
    )
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the kws DS-CNN on synthesized speech")
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1, help="training seed (init, batch order, masking)")
    parser.add_argument("--train-count", type=int, default=24000)
    parser.add_argument("--test-count", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--regenerate", action="store_true", help="synthesize the data even if stored files exist")
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "args": {k: os.path.relpath(v, ROOT) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "torch": torch.__version__,
    }

    t0 = time.perf_counter()
    x_train, y_train, train_info = load_or_generate(
        "train", args.train_count, args.data_seed, args.data / "X_train.npy", args.data / "y_train.npy", args.regenerate
    )
    x_test, y_test, test_info = load_or_generate(
        "test", args.test_count, args.data_seed, out / "X_test.npy", out / "y_test.npy", args.regenerate
    )
    results["generation_seconds"] = round(time.perf_counter() - t0, 1)
    test_meta = test_info.pop("meta", None)
    train_info.pop("meta", None)
    results["data"] = {"train": train_info, "test": test_info}
    print(f"[train] data: train {x_train.shape} test {x_test.shape} ({results['generation_seconds']} s)", flush=True)

    calib = x_train[calibration_subset(y_train, 200, args.seed)]
    np.save(out / "X_calib.npy", calib)
    (out / "labels.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")

    t1 = time.perf_counter()
    net, history = train(x_train, y_train, args.seed, args.epochs, args.batch, args.lr)
    results["training_seconds"] = round(time.perf_counter() - t1, 1)
    results["history"] = history

    onnx_path = out / "model.onnx"
    export_onnx(WithSoftmax(net), torch.zeros(1, 1, 49, 10), onnx_path, output_name="probs")
    with torch.no_grad():
        torch_probs = WithSoftmax(net)(torch.from_numpy(x_test.astype(np.float32))).numpy()

    fp32, pred32 = top1(onnx_path, x_test, y_test)
    agree = float((torch_probs.argmax(1) == pred32).mean())
    with __import__("tempfile").TemporaryDirectory() as tmp:
        int8_path = Path(tmp) / "model.int8.onnx"
        quantize_model(onnx_path, int8_path, calib, bundled_quantization())
        int8, pred8 = top1(int8_path, x_test, y_test)
        import onnx

        results["ops_int8"] = sorted({n.op_type for n in onnx.load(str(int8_path)).graph.node})
        results["int8_sha256"] = file_sha256(int8_path)
    import onnx

    results["ops_fp32"] = sorted({n.op_type for n in onnx.load(str(onnx_path)).graph.node})
    train_acc, _ = top1(onnx_path, x_train, y_train)
    results.update(
        fp32_top1=round(fp32, 4),
        int8_top1=round(int8, 4),
        train_top1_fp32=round(train_acc, 4),
        torch_ort_argmax_agreement=agree,
        model_sha256=file_sha256(onnx_path),
    )
    confusion = np.zeros((len(LABELS), len(LABELS)), dtype=int)
    np.add.at(confusion, (y_test, pred32), 1)
    results["confusion_fp32"] = confusion.tolist()
    if test_meta is not None:
        results["fp32_by_accent"] = breakdown(pred32, y_test, test_meta, "accent")
        results["fp32_by_noise"] = breakdown(pred32, y_test, test_meta, "noise")
    results["quality_target"] = write_manifest(out / "model.toml", fp32, int8, len(x_test))
    results["file_bytes"] = {
        os.path.relpath(p, ROOT): p.stat().st_size
        for p in sorted([*out.iterdir(), *args.data.glob("*.npy")])
        if p.is_file()
    }
    (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(
        f"[train] fp32 top-1 {fp32:.4f}  int8 top-1 {int8:.4f}  train {train_acc:.4f}  "
        f"target {results['quality_target']:.2f}  training {results['training_seconds']} s",
        flush=True,
    )
    print(f"[train] ops fp32 {results['ops_fp32']}\n[train] ops int8 {results['ops_int8']}")


if __name__ == "__main__":
    main()
