"""The exporter gallery: small models made once by the tools users bring models from.

    pip install -c constraints.txt -e ".[train,exporters]"
    python training/exporters/make_gallery.py            # writes tests/data/exporters/<name>/

Each folder is a model folder as a user would add it (model.toml, the ONNX file
or files, `.npy` data): the scikit-learn digits (8x8 images, 10 classes, shipped
with scikit-learn, no download), split 1,000 train / 797 test. The networks are
trained briefly: the gallery checks what the exporters write, not accuracy. Each
manifest's quality target is a round figure a few points below what ONNX Runtime
measured on the 200 test samples (CNNs 86 %, the Brevitas MLP 95 %, scikit-learn 97 %).

- `torch_legacy`: a small CNN from torch.onnx.export(dynamo=False), dynamic batch;
- `torch_dynamo`: the same weights from torch.onnx.export's default (dynamo)
  exporter, weights in an external data file (model.onnx.data);
- `ort_qdq_tensor`, `ort_qdq_channel`: `torch_legacy` quantized by ONNX Runtime's
  quantize_static (QDQ, int8 activations and weights; per tensor / per channel),
  given as `model_int8`;
- `brevitas_qcdq`, `brevitas_qcdq_b1`: a Brevitas MLP with 4-bit weights and
  8-bit activations (quantization-aware trained), exported as QCDQ with a dynamic
  batch and with a fixed batch of 1;
- `brevitas_qonnx`: the same MLP as QONNX (`Quant` nodes);
- `skl_zipmap`, `skl_tensor`: a scikit-learn StandardScaler + MLPClassifier through
  skl2onnx, with the default ZipMap output and with `zipmap: False`.

Everything is seeded; re-running gives the same models up to the exporters' versions.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import onnx

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "exporters"
SEED = 0
IR_VERSION = 8  # what every supported ONNX Runtime reads (onnx 1.23 writes 14 by default)


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8] in [0, 1]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(x))
    x, y = x[order], y[order]
    return x[:1000], y[:1000], x[1000:], y[1000:]


def write_folder(name: str, files: dict[str, np.ndarray], manifest: str) -> Path:
    folder = OUT / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, array in files.items():
        np.save(folder / file, array, allow_pickle=False)
    (folder / "model.toml").write_text(f"# Written by training/exporters/make_gallery.py.\n{manifest.strip()}\n")
    return folder


CALIBRATED = 'calibration = "X_calib.npy"'
LOGITS = '\n[outputs.logits]\nrole = "logits"\n'
SKL_OUTPUTS = '\n[outputs.probabilities]\nrole = "probabilities"\n\n[outputs.label]\nrole = "ignore"\n'
ZIPMAP_OUTPUTS = '\n[outputs.output_probability]\nrole = "probabilities"\n\n[outputs.output_label]\nrole = "ignore"\n'
PRE_QUANTIZED = 'dtypes = ["int8"]\nmodel_int8 = "model.onnx"'


def manifest(use_case: str, architecture: str, target: float, extra: str = "", outputs: str = LOGITS) -> str:
    return f"""
use_case = "{use_case}"
task = "classification"
metric = "top1"
quality_target = {target}
architecture = "{architecture}"
link = "https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset"
ndata = 10
samples = 200
x_test = "X_test.npy"
y_test = "y_test.npy"
{extra}
{outputs}"""


def train(module, x: np.ndarray, y: np.ndarray, epochs: int) -> None:
    import torch

    torch.manual_seed(SEED)
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    module.train()
    for _ in range(epochs):
        for i in range(0, len(xt), 50):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(module(xt[i : i + 50]), yt[i : i + 50])
            loss.backward()
            optimizer.step()
    module.eval()


def cnn():
    import torch

    class Cnn(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.c2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.fc = torch.nn.Linear(16, 10)

        def forward(self, x):
            x = torch.relu(self.c2(torch.relu(self.c1(x))))
            return self.fc(x.mean(dim=(2, 3)))  # global average pooling, as torch users write it

    return Cnn()


def mlp_brevitas():
    import torch
    from brevitas import nn as qnn
    from brevitas.quant import Int8ActPerTensorFloat

    class Mlp(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, return_quant_tensor=True)
            self.fc1 = qnn.QuantLinear(64, 32, bias=True, weight_bit_width=4, return_quant_tensor=True)
            self.act = qnn.QuantReLU(bit_width=8, return_quant_tensor=True)
            self.fc2 = qnn.QuantLinear(32, 10, bias=True, weight_bit_width=4)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(self.inp(x.flatten(1)))))

    return Mlp()


def set_ir(path: Path) -> None:
    model = onnx.load(str(path))
    if model.ir_version > IR_VERSION:
        model.ir_version = IR_VERSION
        onnx.save(model, str(path))


def torch_models(xtr, ytr, xte, yte) -> None:
    import torch

    net = cnn()
    train(net, xtr, ytr, epochs=60)
    example = torch.from_numpy(xte[:1])
    data = {"X_test.npy": xte, "y_test.npy": yte}
    legacy = write_folder(
        "torch_legacy",
        {**data, "X_calib.npy": xtr[:200]},
        manifest("Digits (torch legacy exporter)", "CNN, global average pooling as ReduceMean", 0.8, CALIBRATED),
    )
    torch.onnx.export(
        net,
        (example,),
        str(legacy / "model.onnx"),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
    )
    set_ir(legacy / "model.onnx")

    dynamo = write_folder(
        "torch_dynamo",
        {**data, "X_calib.npy": xtr[:200]},
        manifest("Digits (torch default exporter)", "CNN, weights in model.onnx.data", 0.8, CALIBRATED),
    )
    batch = {"x": {0: torch.export.Dim("N")}}
    program = torch.onnx.export(
        net, (torch.from_numpy(xte[:2]),), dynamic_shapes=batch, input_names=["x"], output_names=["logits"]
    )
    program.save(str(dynamo / "model.onnx"), external_data=True)

    for name, per_channel in (("ort_qdq_tensor", False), ("ort_qdq_channel", True)):
        folder = write_folder(
            name,
            data,
            manifest(
                f"Digits (ONNX Runtime QDQ, per {'channel' if per_channel else 'tensor'})",
                "CNN QDQ",
                0.8,
                PRE_QUANTIZED,
            ),
        )
        quantize_qdq(legacy / "model.onnx", folder / "model.onnx", xtr[:200], per_channel)

    brevitas_models(xtr, ytr, xte, yte)


def quantize_qdq(src: Path, dst: Path, calibration: np.ndarray, per_channel: bool) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": calibration[i : i + 20]} for i in range(0, len(calibration), 20)])

        def get_next(self):
            return next(self.items, None)

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
    )


def brevitas_models(xtr, ytr, xte, yte) -> None:
    import torch
    from brevitas.export import export_onnx_qcdq, export_qonnx

    torch.manual_seed(SEED)
    net = mlp_brevitas()
    train(net, xtr, ytr, epochs=20)
    data = {"X_test.npy": xte, "y_test.npy": yte}
    for name, batch in (("brevitas_qcdq", 5), ("brevitas_qcdq_b1", 1)):
        folder = write_folder(
            name,
            data,
            manifest(
                f"Digits (Brevitas QCDQ, batch {'N' if batch > 1 else 1})", "MLP, 4-bit weights", 0.9, PRE_QUANTIZED
            ),
        )
        dynamic = {"axes": {"x": {0: "N"}, "logits": {0: "N"}}} if batch > 1 else {}
        export_onnx_qcdq(
            net,
            torch.from_numpy(xte[:batch]),
            export_path=str(folder / "model.onnx"),
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes=dynamic.get("axes"),
            opset_version=17,
            dynamo=False,  # TorchScript path: one self-contained file (the external-data case is torch_dynamo)
        )
        set_ir(folder / "model.onnx")
    folder = write_folder(
        "brevitas_qonnx",
        data,
        manifest("Digits (Brevitas QONNX)", "MLP, 4-bit weights", 0.9, PRE_QUANTIZED),
    )
    export_qonnx(
        net,
        torch.from_numpy(xte[:1]),
        export_path=str(folder / "model.onnx"),
        input_names=["x"],
        output_names=["logits"],
        dynamo=False,
    )


def sklearn_models(xtr, ytr, xte, yte) -> None:
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    flat_tr, flat_te = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
    pipe = make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=300, random_state=SEED))
    pipe.fit(flat_tr, ytr)
    data = {"X_test.npy": flat_te, "y_test.npy": yte, "X_calib.npy": flat_tr[:200]}
    for name, options in (("skl_zipmap", None), ("skl_tensor", {"zipmap": False})):
        folder = write_folder(
            name,
            data,
            manifest(
                f"Digits (skl2onnx{', zipmap off' if options else ''})",
                "scaler + MLP",
                0.93,
                CALIBRATED,
                SKL_OUTPUTS if options else ZIPMAP_OUTPUTS,
            ),
        )
        model = to_onnx(
            pipe, flat_tr[:1], options={id(pipe.steps[-1][1]): options} if options else None, target_opset=17
        )
        model.ir_version = min(model.ir_version, IR_VERSION)
        onnx.save(model, str(folder / "model.onnx"))


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    xtr, ytr, xte, yte = digits()
    xte, yte = xte[:200], yte[:200]  # small files: 200 test samples are enough for the gallery's checks
    torch_models(xtr, ytr, xte, yte)
    sklearn_models(xtr, ytr, xte, yte)
    for folder in sorted(OUT.iterdir()):
        size = sum(f.stat().st_size for f in folder.iterdir())
        print(f"{folder.name:20s} {size / 1024:7.1f} KiB  {sorted(f.name for f in folder.iterdir())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
