"""The bundled cpu golden checks without pytest: the same ONNX Runtime calls the
plugin's cpu target makes (full test set, warm-up, 50 single-sample latency runs,
5 batched throughput runs) plus the golden comparison and accuracy, by hand.

    python benchmarks/plain_golden_check.py ROOT QUANTIZED_DIR
"""

import json
import statistics
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main(root: Path, quantized: dict[str, str]) -> None:
    for manifest in sorted(root.glob("models/*/model.toml")):
        folder = manifest.parent
        spec = tomllib.loads(manifest.read_text())
        x = np.load(folder / "X_test.npy").astype(np.float32)[: spec.get("samples", 1000)]
        y = np.load(folder / "y_test.npy")[: len(x)]
        golden = json.loads((root / "golden" / folder.name / "golden.json").read_text())
        for dtype in spec.get("dtypes", ["fp32", "int8"]):
            sess = session(folder / "model.onnx" if dtype == "fp32" else quantized[folder.name])
            name = sess.get_inputs()[0].name
            out = np.concatenate([sess.run(None, {name: x[i : i + 256]})[0] for i in range(0, len(x), 256)])
            for _ in range(5):
                sess.run(None, {name: x[:1]})
            latency = []
            for _ in range(50):
                start = time.perf_counter_ns()
                sess.run(None, {name: x[:1]})
                latency.append(time.perf_counter_ns() - start)
            for _ in range(5):
                sess.run(None, {name: x[:256]})
            expected = np.load(
                root / "golden" / folder.name / golden["dtypes"][dtype]["outputs"][sess.get_outputs()[0].name]
            )
            assert np.allclose(out[: len(expected)], expected, atol=1e-5, rtol=1e-3)
            if spec["metric"] == "auc":  # pairwise ROC AUC: anomalous scored above normal, ties half
                score = ((x.reshape(len(x), -1) - out.reshape(len(out), -1)) ** 2).mean(1)
                pos, neg = score[y == 1][:, None], score[y == 0][None, :]
                float(np.mean(pos > neg) + 0.5 * np.mean(pos == neg))
            else:
                float(np.mean(out.argmax(1) == y))
            statistics.median(latency)


if __name__ == "__main__":
    main(Path(sys.argv[1]), json.loads(sys.argv[2]))
