"""Model folders: `models/<name>/model.toml` manifests, validated on load, and their data.

A manifest error names the file and the key, because the person reading it has
just edited that file. Data files are untrusted: no pickles, no paths outside
the model folder.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

MANIFEST = "model.toml"
DTYPES = ("fp32", "int8")
METRICS = {"classification": ("top1", "top5"), "anomaly_detection": ("auc",)}
DEFAULT_TOLERANCE = {"atol": 1e-5, "rtol": 1e-3}
QUANTIZATION_DEFAULTS: dict[str, Any] = {
    "format": "QOperator",
    "activation_type": "uint8",
    "weight_type": "int8",
    "per_channel": False,
    "reduce_range": False,
    "calibrate_method": "MinMax",
    "calibration_samples": 200,
}
_QUANT_CHOICES = {
    "format": ("QOperator", "QDQ"),
    "activation_type": ("uint8", "int8"),
    "weight_type": ("int8", "uint8"),
    "calibrate_method": ("MinMax", "Entropy", "Percentile"),
}

SUITE_KEYS = ("skip", "max_regression", "samples")
"""Keys of [targets.<name>] the suite reads itself; the rest goes to the target."""

_REQUIRED = object()
# key: (type, default). "path" means a file inside the model folder.
_SCHEMA: dict[str, tuple[Any, Any]] = {
    "name": (str, None),
    "use_case": (str, _REQUIRED),
    "task": (str, _REQUIRED),
    "metric": (str, _REQUIRED),
    "quality_target": (float, _REQUIRED),
    "dtypes": (list, list(DTYPES)),
    "ndata": (int, 10),
    "samples": (int, 1000),
    "layer_samples": (int, 1),
    "model": ("path", "model.onnx"),
    "model_int8": ("path", None),
    "x_test": ("path", "X_test.npy"),
    "y_test": ("path", "y_test.npy"),
    "calibration": ("path", None),
    "labels": ("path", None),
    "architecture": (str, ""),
    "link": (str, ""),
    "top5_tolerance": (float, 0.01),
    "tolerance": (dict, {}),
    "quantization": (dict, {}),
    "targets": (dict, {}),
}


class ManifestError(Exception):
    """A manifest problem: which file, which key, what is wrong and what to do."""

    def __init__(self, path: Path, key: str, problem: str) -> None:
        self.path, self.key = path, key
        super().__init__(f"{path}: key '{key}': {problem}")


@dataclass(frozen=True)
class Model:
    """One validated model folder."""

    name: str
    dir: Path
    use_case: str
    task: str
    metric: str
    quality_target: float
    dtypes: tuple[str, ...]
    ndata: int
    samples: int
    layer_samples: int
    """Golden samples whose every intermediate tensor is stored (per-kernel goldens); 0 = none."""
    onnx_path: Path
    int8_onnx_path: Path | None
    x_test_path: Path
    y_test_path: Path | None
    """None when the model has no labelled test set: accuracy is then skipped, not faked."""
    calibration_path: Path | None
    labels_path: Path | None
    architecture: str
    link: str
    top5_tolerance: float
    tolerance: dict[str, Any] = field(repr=False)
    quantization: dict[str, Any] = field(repr=False)
    targets: dict[str, dict[str, Any]] = field(repr=False)

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST

    @cached_property
    def sha256(self) -> str:
        return file_sha256(self.onnx_path)

    @property
    def is_classification(self) -> bool:
        return self.task == "classification"

    def target_options(self, target: str) -> dict[str, Any]:
        """The manifest's `[targets.<target>]` table, minus the keys the suite reads."""
        return {k: v for k, v in self.targets.get(target, {}).items() if k not in SUITE_KEYS}

    def skip_reason(self, target: str) -> str | None:
        return self.targets.get(target, {}).get("skip")

    def samples_for(self, target: str) -> int:
        """Accuracy samples on `target`: [targets.<target>] samples (for slow simulators), else `samples`."""
        return self.targets.get(target, {}).get("samples", self.samples)

    def tolerance_for(self, target: str, dtype: str, target_default: dict[str, dict[str, float]]) -> dict[str, float]:
        """atol/rtol: built-in default < [tolerance] < target's default for the dtype
        < [tolerance.<dtype>] < [tolerance.<target>] < [tolerance.<target>.<dtype>]."""
        tol = dict(DEFAULT_TOLERANCE)
        layers = [
            self.tolerance,
            target_default.get(dtype, {}),
            self.tolerance.get(dtype, {}),
            self.tolerance.get(target, {}),
            self.tolerance.get(target, {}).get(dtype, {}),
        ]
        for layer in layers:
            tol.update({k: float(v) for k, v in layer.items() if k in DEFAULT_TOLERANCE})
        return tol

    @cached_property
    def labels(self) -> list[str] | None:
        if self.labels_path is None:
            return None
        return self.labels_path.read_text(encoding="utf-8").splitlines()

    def load_x(self, count: int | None = None) -> np.ndarray:
        x = load_array(self.x_test_path)
        return x if count is None else x[:count]

    def load_y(self, count: int | None = None) -> np.ndarray | None:
        if self.y_test_path is None:
            return None
        y = load_array(self.y_test_path)
        return y if count is None else y[:count]

    def load_calibration(self) -> np.ndarray:
        if self.calibration_path is None:
            raise DataError(f"{self.manifest_path}: int8 needs a calibration set ('calibration' key)")
        return load_array(self.calibration_path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_array(path: Path) -> np.ndarray:
    """np.load without pickles, with errors that name the file."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"{path}: refused, the file holds pickled Python objects; "
                "save plain numeric arrays (np.save of a numeric ndarray)"
            ) from exc
        raise DataError(f"{path}: not a readable .npy file ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path}: expected a single array (.npy), got an archive")
    if array.dtype.kind not in "biuf":
        raise DataError(f"{path}: dtype {array.dtype} is not numeric")
    return array


def discover(models_dir: Path) -> list[Path]:
    """Manifests directly under `models_dir/<name>/`, sorted by name."""
    if not models_dir.is_dir():
        return []
    return sorted(p for p in models_dir.glob(f"*/{MANIFEST}") if p.is_file())


def load_model(manifest: Path) -> Model:
    """Parse and validate one manifest; raises ManifestError naming the key."""
    try:
        raw = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(manifest, "(syntax)", f"not valid TOML: {exc}") from exc
    folder = manifest.parent
    unknown = sorted(set(raw) - set(_SCHEMA))
    if unknown:
        raise ManifestError(manifest, unknown[0], f"unknown key; allowed keys: {', '.join(_SCHEMA)}")
    values: dict[str, Any] = {}
    for key, (kind, default) in _SCHEMA.items():
        if key not in raw:
            if default is _REQUIRED:
                raise ManifestError(manifest, key, "missing (required)")
            optional = key == "y_test" and not (folder / default).is_file()  # no labels: accuracy is skipped
            values[key] = _resolve(manifest, key, default) if kind == "path" and default and not optional else (None if optional else default)
            continue
        values[key] = _check_type(manifest, key, raw[key], kind)
    _check_semantics(manifest, values)
    return Model(
        name=values["name"] or folder.name,
        dir=folder,
        use_case=values["use_case"],
        task=values["task"],
        metric=values["metric"],
        quality_target=values["quality_target"],
        dtypes=tuple(values["dtypes"]),
        ndata=values["ndata"],
        samples=values["samples"],
        layer_samples=values["layer_samples"],
        onnx_path=values["model"],
        int8_onnx_path=values["model_int8"],
        x_test_path=values["x_test"],
        y_test_path=values["y_test"],
        calibration_path=values["calibration"],
        labels_path=values["labels"],
        architecture=values["architecture"],
        link=values["link"],
        top5_tolerance=values["top5_tolerance"],
        tolerance=values["tolerance"],
        quantization={**QUANTIZATION_DEFAULTS, **values["quantization"]},
        targets=values["targets"],
    )


def _check_type(manifest: Path, key: str, value: Any, kind: Any) -> Any:
    if kind == "path":
        if not isinstance(value, str):
            raise ManifestError(manifest, key, f"expected a file name (string), got {type(value).__name__}")
        return _resolve(manifest, key, value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ManifestError(manifest, key, f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _resolve(manifest: Path, key: str, name: str) -> Path:
    folder = manifest.parent.resolve()
    path = (folder / name).resolve()
    if not path.is_relative_to(folder):
        raise ManifestError(manifest, key, f"path {name!r} leaves the model folder; keep data inside {folder.name}/")
    if not path.is_file():
        raise ManifestError(manifest, key, f"file {name!r} does not exist in {folder.name}/")
    return path


def _check_semantics(manifest: Path, v: dict[str, Any]) -> None:
    if v["task"] not in METRICS:
        raise ManifestError(manifest, "task", f"{v['task']!r} is not one of {list(METRICS)}")
    if v["metric"] not in METRICS[v["task"]]:
        raise ManifestError(manifest, "metric", f"{v['metric']!r} is not valid for task {v['task']!r}; use one of {list(METRICS[v['task']])}")
    bad = [d for d in v["dtypes"] if d not in DTYPES]
    if not v["dtypes"] or bad or len(set(v["dtypes"])) != len(v["dtypes"]):
        raise ManifestError(manifest, "dtypes", f"expected a non-empty list of distinct values from {list(DTYPES)}, got {v['dtypes']}")
    for key in ("ndata", "samples"):
        if v[key] < 1:
            raise ManifestError(manifest, key, f"must be at least 1, got {v[key]}")
    if not 0 <= v["layer_samples"] <= v["ndata"]:
        raise ManifestError(manifest, "layer_samples", f"must be between 0 and ndata={v['ndata']}, got {v['layer_samples']}")
    if not 0 <= v["quality_target"] <= 1:
        raise ManifestError(manifest, "quality_target", f"must be a fraction in [0, 1], got {v['quality_target']}")
    if "int8" in v["dtypes"] and v["model_int8"] is None and v["calibration"] is None:
        raise ManifestError(manifest, "calibration", "int8 is listed in dtypes: give a calibration set to quantize with, or a pre-quantized 'model_int8'")
    _check_tolerance(manifest, v["tolerance"], "tolerance")
    _check_quantization(manifest, v["quantization"])
    for target, table in v["targets"].items():
        if not isinstance(table, dict):
            raise ManifestError(manifest, f"targets.{target}", "expected a table")
        if "skip" in table and not isinstance(table["skip"], str):
            raise ManifestError(manifest, f"targets.{target}.skip", "expected the reason as a string")
        samples = table.get("samples", 1)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ManifestError(manifest, f"targets.{target}.samples", f"expected a positive integer, got {samples!r}")
        if "max_regression" in table:
            from .baseline import BaselineError, parse_margins

            try:
                parse_margins(table["max_regression"], "max_regression")
            except (BaselineError, AttributeError) as exc:
                raise ManifestError(manifest, f"targets.{target}.max_regression",
                                    f"{exc}; expected e.g. \"cycles=0%,ns=10%,accuracy=0.5\" or a table") from exc


def _check_tolerance(manifest: Path, table: dict[str, Any], prefix: str, depth: int = 0) -> None:
    for key, value in table.items():
        name = f"{prefix}.{key}"
        if key in DEFAULT_TOLERANCE:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ManifestError(manifest, name, f"expected a non-negative number, got {value!r}")
        elif isinstance(value, dict) and depth < 2 and key.isidentifier():
            _check_tolerance(manifest, value, name, depth + 1)
        else:
            raise ManifestError(manifest, name, "expected atol/rtol, or a table named after a dtype or target (e.g. [tolerance.int8], [tolerance.aie.int8])")


def _check_quantization(manifest: Path, table: dict[str, Any]) -> None:
    for key, value in table.items():
        name = f"quantization.{key}"
        if key not in QUANTIZATION_DEFAULTS:
            raise ManifestError(manifest, name, f"unknown key; allowed: {', '.join(QUANTIZATION_DEFAULTS)}")
        expected = type(QUANTIZATION_DEFAULTS[key])
        if type(value) is not expected:
            raise ManifestError(manifest, name, f"expected {expected.__name__}, got {value!r}")
        if key in _QUANT_CHOICES and value not in _QUANT_CHOICES[key]:
            raise ManifestError(manifest, name, f"{value!r} is not one of {list(_QUANT_CHOICES[key])}")
