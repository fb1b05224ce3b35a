"""Model folders: `models/<name>/model.toml` manifests, validated on load, and their data.

A manifest error names the file and the key, because the person reading it has
just edited that file. Data files are untrusted: no pickles, no paths outside
the model folder.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError, Field, at_least, check_value, validate
from .data import load_array
from .errors import DataError
from .margins import parse_margins
from .modelfiles import model_sha256
from .modelkinds import prequantized, warn_unscored_logits
from .runtime import output_specs

MANIFEST = "model.toml"
DTYPES = ("fp32", "int8")
CHECKS = ("golden", "accuracy", "top5", "baseline")
"""The standard checks (test_<check>), the keys an `xfail` table may name."""
METRICS = {"classification": ("top1", "top5"), "anomaly_detection": ("auc",)}
DEFAULT_TOLERANCE = {"atol": 1e-5, "rtol": 1e-3}
SUITE_KEYS = ("skip", "max_regression", "samples", "xfail")
"""Keys of [targets.<name>] the suite reads itself; the rest goes to the target."""
ROLES = {
    "probabilities": "classification",
    "logits": "classification",
    "reconstruction": "anomaly_detection",
    "score": "anomaly_detection",
    "auxiliary": None,
    "ignore": None,
}
"""What an output means ([outputs."<name>"] role): the first four are scored (accuracy, Top-5,
AUC) and belong to a task; `auxiliary` is only golden-checked, `ignore` not even that."""
DEFAULT_ROLE = {"classification": "probabilities", "anomaly_detection": "reconstruction"}
"""The role of a model's only (or only undeclared) output when the manifest names none."""


def _fraction(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must be a fraction in [0, 1], got {value}"


def _dtypes(value: list[Any]) -> str | None:
    if value and all(d in DTYPES for d in value) and len(set(value)) == len(value):
        return None
    return f"expected a non-empty list of distinct values from {list(DTYPES)}, got {value}"


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _model_name(value: str) -> str | None:
    """A model name is a name: it becomes a test id and the golden folder's name, never a path."""
    if _NAME.fullmatch(value) and ".." not in value:
        return None
    return f"{value!r} is not a model name: use letters, digits, '_', '-' and '.', starting with a letter or digit"


_PATHS = ("model", "model_int8", "x_test", "y_test", "calibration", "labels")
"""Keys that name a file inside the model folder."""
_SCHEMA: dict[str, Field] = {
    "name": Field(str, None, check=_model_name),
    "use_case": Field(str),
    "task": Field(str, choices=tuple(METRICS)),
    "metric": Field(str),
    "quality_target": Field(float, None, check=_fraction),
    "dtypes": Field(list, list(DTYPES), check=_dtypes),
    "ndata": Field(int, 10, check=at_least(1)),
    "samples": Field(int, 1000, check=at_least(1)),
    "layer_samples": Field(int, 1, check=at_least(0)),
    "model": Field(str, "model.onnx"),
    "model_int8": Field(str, None),
    "x_test": Field(str, "X_test.npy"),
    "y_test": Field(str, "y_test.npy"),
    "calibration": Field(str, None),
    "labels": Field(str, None),
    "architecture": Field(str, ""),
    "link": Field(str, ""),
    "top5_tolerance": Field(float, 0.01, check=at_least(0)),
    "tolerance": Field(dict, {}),
    "quantization": Field(dict, {}),
    "targets": Field(dict, {}),
    "outputs": Field(dict, {}),
}
_QUANT_SCHEMA: dict[str, Field] = {
    "format": Field(str, "QOperator", choices=("QOperator", "QDQ")),
    "activation_type": Field(str, "uint8", choices=("uint8", "int8")),
    "weight_type": Field(str, "int8", choices=("int8", "uint8")),
    "per_channel": Field(bool, False),
    "reduce_range": Field(bool, False),
    "calibrate_method": Field(str, "MinMax", choices=("MinMax", "Entropy", "Percentile")),
    "calibration_samples": Field(int, 200, check=at_least(1)),
}
QUANTIZATION_DEFAULTS: dict[str, Any] = {k: f.default for k, f in _QUANT_SCHEMA.items()}


def _xfail(value: str | dict[str, Any]) -> str | None:
    """A reason for every check, or a table by dtype and/or check (a dtype's value may be a table by check)."""
    if isinstance(value, str):
        return None if value.strip() else "expected the reason as a non-empty string"
    for key, reason in value.items():
        if key not in (*DTYPES, *CHECKS):
            return f"key {key!r}: expected a dtype ({', '.join(DTYPES)}) or a check ({', '.join(CHECKS)})"
        if isinstance(reason, dict) and key in DTYPES:
            bad = [k for k, r in reason.items() if k not in CHECKS or not isinstance(r, str) or not r.strip()]
            if bad:
                return f"{key}.{bad[0]}: expected a check ({', '.join(CHECKS)}) = a non-empty reason"
        elif not isinstance(reason, str) or not reason.strip():
            return f"{key}: expected the reason as a non-empty string"
    return None


_SUITE_SCHEMA: dict[str, Field] = {
    "skip": Field(str, None),
    "samples": Field(int, None, check=at_least(1)),
    "max_regression": Field((str, dict), None),
    "xfail": Field((str, dict), None, check=_xfail),
}
_TOLERANCE_FIELD = Field(float, check=at_least(0))


@dataclass(frozen=True)
class Model:
    """One validated model folder."""

    name: str
    dir: Path
    use_case: str
    task: str
    metric: str
    quality_target: float | None
    """None: accuracy is measured and reported, not gated (no target given)."""
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
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    """The manifest's [outputs."<name>"] tables: role, atol/rtol and tolerance sub-tables."""
    int8_bits: str = ""
    """Bit widths of the int8 model as its graph states them ("w4a8"), where it came quantized."""

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST

    @cached_property
    def scored_output(self) -> str:
        """The output accuracy, Top-5 and AUC read: the one declaring a scored role, else the only
        output the manifest does not declare. ConfigError naming the outputs when that is ambiguous."""
        return _scored_output(self.manifest_path, self.task, self.outputs, _output_names(self.onnx_path))

    @property
    def scored_role(self) -> str:
        """probabilities | logits (classification), reconstruction | score (anomaly_detection)."""
        return self.role(self.scored_output)

    def role(self, output: str) -> str:
        """The output's declared role; undeclared: the task's default for the scored output, else auxiliary."""
        declared = self.outputs.get(output, {}).get("role")
        if declared:
            return str(declared)
        return DEFAULT_ROLE[self.task] if output == self.scored_output else "auxiliary"

    def scored(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The scored output of float `outputs`; logits become probabilities (softmax over the
        classes), so Top-5 stores and compares probabilities whichever the model emits."""
        name = self.scored_output
        if name not in outputs:  # an author's int8 model may name its one output differently
            if len(outputs) != 1:
                raise DataError(
                    f"{self.manifest_path}: this dtype's model has outputs {sorted(outputs)}, not the "
                    f"scored '{name}'; give the int8 model the float model's output names"
                )
            name = next(iter(outputs))
        value = outputs[name]
        if self.scored_role != "logits":
            return value
        flat = value.reshape(len(value), -1).astype(np.float64)
        exp = np.exp(flat - flat.max(axis=1, keepdims=True))
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32).reshape(value.shape)

    @cached_property
    def sha256(self) -> str:
        return model_sha256(self.onnx_path)

    @property
    def is_classification(self) -> bool:
        return self.task == "classification"

    def target_options(self, target: str) -> dict[str, Any]:
        """The manifest's `[targets.<target>]` table, minus the keys the suite reads."""
        return {k: v for k, v in self.targets.get(target, {}).items() if k not in SUITE_KEYS}

    def skip_reason(self, target: str) -> str | None:
        return self.targets.get(target, {}).get("skip")

    def xfail_reason(self, target: str, dtype: str, check: str) -> str | None:
        """Why `check` is expected to fail for this model on `target` in `dtype` ([targets.<t>] xfail)."""
        spec = self.targets.get(target, {}).get("xfail")
        if spec is None or isinstance(spec, str):
            return spec
        by_dtype = spec.get(dtype)
        if isinstance(by_dtype, dict):
            return by_dtype.get(check)
        return by_dtype or spec.get(check)

    def samples_for(self, target: str) -> int:
        """Accuracy samples on `target`: [targets.<target>] samples (for slow simulators), else `samples`."""
        return self.targets.get(target, {}).get("samples", self.samples)

    def tolerance_for(
        self, target: str, dtype: str, target_default: dict[str, dict[str, float]], output: str | None = None
    ) -> dict[str, float]:
        """atol/rtol: built-in default < [tolerance] < target's default for the dtype
        < [tolerance.<dtype>] < [tolerance.<target>] < [tolerance.<target>.<dtype>]; for `output`,
        each level's [outputs."<output>"] counterpart right after it (the output's own atol
        after [tolerance], its .<dtype> table after [tolerance.<dtype>] ...)."""
        tol = dict(DEFAULT_TOLERANCE)
        own = self.outputs.get(output, {}) if output is not None else {}
        layers = [
            self.tolerance,
            own,
            target_default.get(dtype, {}),
            self.tolerance.get(dtype, {}),
            own.get(dtype, {}),
            self.tolerance.get(target, {}),
            own.get(target, {}),
            self.tolerance.get(target, {}).get(dtype, {}),
            own.get(target, {}).get(dtype, {}),
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
        return load_array(self.x_test_path, count)

    def load_y(self, count: int | None = None) -> np.ndarray | None:
        if self.y_test_path is None:
            return None
        return load_array(self.y_test_path, count)

    def load_calibration(self) -> np.ndarray:
        if self.calibration_path is None:
            raise DataError(f"{self.manifest_path}: int8 needs a calibration set ('calibration' key)")
        return load_array(self.calibration_path)


def discover(models_dir: Path) -> list[Path]:
    """The manifest of every folder directly under `models_dir/<name>/`, sorted by name, whether it
    exists or not: a folder without one fails to load, not a silently smaller suite (hidden and
    `_`-prefixed folders are skipped)."""
    if not models_dir.is_dir():
        return []
    folders = sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    return [folder / MANIFEST for folder in folders]


def listed_dtypes(manifest: Path) -> tuple[str, ...]:
    """The dtypes a manifest lists, read as far as it can be read (every dtype when it cannot)."""
    try:
        listed = tomllib.loads(manifest.read_text(encoding="utf-8")).get("dtypes")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return DTYPES
    if isinstance(listed, list) and listed and all(d in DTYPES for d in listed):
        return tuple(dict.fromkeys(listed))
    return DTYPES


def load_model(manifest: Path) -> Model:
    """Parse and validate one manifest; raises ConfigError naming the file and the key."""
    if not manifest.is_file():
        raise ConfigError(
            manifest.parent,
            MANIFEST,
            f"the model folder has no {MANIFEST}; add one (README: Adding a model) "
            f"or move the folder out of {manifest.parent.parent.name}/",
        )
    try:
        raw = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(manifest, "(syntax)", f"not valid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(manifest, "(file)", f"cannot read the manifest: {exc}") from exc
    folder = manifest.parent
    v = validate(raw, _SCHEMA, manifest)
    if v["metric"] not in METRICS[v["task"]]:
        raise ConfigError(
            manifest,
            "metric",
            f"{v['metric']!r} is not valid for task {v['task']!r}; use one of {list(METRICS[v['task']])}",
        )
    if v["layer_samples"] > v["ndata"]:
        raise ConfigError(
            manifest, "layer_samples", f"must be between 0 and ndata={v['ndata']}, got {v['layer_samples']}"
        )
    for key in _PATHS:
        if v[key] is not None and (key in raw or key != "y_test" or (folder / v[key]).is_file()):
            v[key] = _resolve(manifest, key, v[key])
        elif key == "y_test":
            v[key] = None  # no labels: accuracy is skipped, not faked
    bits = prequantized(manifest, raw, v)
    if "int8" in v["dtypes"] and v["model_int8"] is None and v["calibration"] is None:
        raise ConfigError(
            manifest,
            "calibration",
            "int8 is listed in dtypes: give a calibration set to quantize with, or a pre-quantized 'model_int8'",
        )
    _check_tolerance(manifest, v["tolerance"], "tolerance")
    quantization = validate(v["quantization"], _QUANT_SCHEMA, manifest, "quantization.")
    for target, table in v["targets"].items():
        _check_target_table(manifest, target, table)
    _check_outputs(manifest, v["task"], v["outputs"])
    model = Model(
        name=v["name"] or folder.name,
        dir=folder,
        use_case=v["use_case"],
        task=v["task"],
        metric=v["metric"],
        quality_target=v["quality_target"],
        dtypes=tuple(v["dtypes"]),
        ndata=v["ndata"],
        samples=v["samples"],
        layer_samples=v["layer_samples"],
        onnx_path=v["model"],
        int8_onnx_path=v["model_int8"],
        x_test_path=v["x_test"],
        y_test_path=v["y_test"],
        calibration_path=v["calibration"],
        labels_path=v["labels"],
        architecture=v["architecture"],
        link=v["link"],
        top5_tolerance=v["top5_tolerance"],
        tolerance=v["tolerance"],
        quantization=quantization,
        targets=v["targets"],
        outputs=v["outputs"],
        int8_bits=bits,
    )
    try:
        names = _output_names(model.onnx_path)
    except DataError:
        return model  # an unreadable model fails its cases, with its own message
    for name in model.outputs:
        if name not in names:
            listed = ", ".join(map(repr, names))
            raise ConfigError(manifest, f'outputs."{name}"', f"{model.onnx_path.name} has no output {name!r}: {listed}")
    _ = model.scored_output  # an ambiguous scored output is a manifest error, raised now
    warn_unscored_logits(
        model.onnx_path, model.manifest_path, model.scored_output, model.is_classification, model.outputs
    )
    return model


def _output_names(onnx_path: Path) -> list[str]:
    return [spec.name for spec in output_specs(onnx_path)]


_OUTPUT_SCHEMA: dict[str, Field] = {
    "role": Field(str, None, choices=tuple(ROLES)),
    "atol": Field(float, None, check=at_least(0)),
    "rtol": Field(float, None, check=at_least(0)),
}


def _check_outputs(manifest: Path, task: str, table: dict[str, Any]) -> None:
    """[outputs."<name>"]: a role that fits the task, atol/rtol, and tolerance tables by dtype/target."""
    for name, spec in table.items():
        where = f'outputs."{name}"'
        if not isinstance(spec, dict):
            raise ConfigError(manifest, where, 'expected a table, e.g. [outputs."probs"] role = "probabilities"')
        own = {k: v for k, v in spec.items() if k in _OUTPUT_SCHEMA or not isinstance(v, dict)}
        validate(own, _OUTPUT_SCHEMA, manifest, where + ".")
        _check_tolerance(manifest, {k: v for k, v in spec.items() if k not in own}, where)
        role = spec.get("role")
        if role is not None and ROLES[role] not in (None, task):
            fitting = [r for r, t in ROLES.items() if t in (None, task)]
            raise ConfigError(
                manifest, where + ".role", f"{role!r} is for {ROLES[role]} models; task {task!r} takes {fitting}"
            )


def _scored_output(manifest: Path, task: str, declared: dict[str, dict[str, Any]], names: list[str]) -> str:
    scored = [n for n in names if ROLES.get(declared.get(n, {}).get("role") or "") == task]
    if len(scored) == 1:
        return scored[0]
    roles = [r for r, t in ROLES.items() if t == task]
    if len(scored) > 1:
        listed = ", ".join(map(repr, scored))
        raise ConfigError(
            manifest, "outputs", f"outputs {listed} all declare a scored role ({', '.join(roles)}); keep one"
        )
    undeclared = [n for n in names if not declared.get(n, {}).get("role")]
    if len(undeclared) == 1:
        return undeclared[0]
    metric, listed = ("accuracy and Top-5" if task == "classification" else "the AUC"), ", ".join(map(repr, names))
    raise ConfigError(
        manifest,
        "outputs",
        f"the model has outputs {listed}: say which one {metric} read, e.g. "
        f'[outputs."{names[-1]}"] role = "{roles[0]}" (roles: {", ".join(roles)})',
    )


def _resolve(manifest: Path, key: str, name: str) -> Path:
    folder = manifest.parent.resolve()
    path = (folder / name).resolve()
    if not path.is_relative_to(folder):
        raise ConfigError(manifest, key, f"path {name!r} leaves the model folder; keep data inside {folder.name}/")
    if not path.is_file():
        raise ConfigError(manifest, key, f"file {name!r} does not exist in {folder.name}/")
    return path


def _check_target_table(manifest: Path, target: str, table: Any) -> None:
    """The suite's own keys of [targets.<target>]; the target validates the rest."""
    where = f"targets.{target}"
    if not isinstance(table, dict):
        raise ConfigError(manifest, where, "expected a table")
    validate({k: v for k, v in table.items() if k in SUITE_KEYS}, _SUITE_SCHEMA, manifest, where + ".")
    if "skip" in table and not table["skip"].strip():
        raise ConfigError(manifest, where + ".skip", "expected the reason as a non-empty string")
    if "max_regression" in table:
        parse_margins(table["max_regression"], f"{manifest}: {where}.max_regression")


def _check_tolerance(manifest: Path, table: dict[str, Any], prefix: str, depth: int = 0) -> None:
    for key, value in table.items():
        name = f"{prefix}.{key}"
        if key in DEFAULT_TOLERANCE:
            check_value(value, _TOLERANCE_FIELD, manifest, name)
        elif isinstance(value, dict) and depth < 2 and key.isidentifier():
            _check_tolerance(manifest, value, name, depth + 1)
        else:
            raise ConfigError(
                manifest,
                name,
                "expected atol/rtol, or a table named after a dtype or target (e.g. [tolerance.int8], "
                "[tolerance.aie.int8])",
            )
