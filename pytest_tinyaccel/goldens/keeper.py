"""ONNX Runtime references: making goldens, telling whether they are still
current, and reviewing them after an ONNX Runtime upgrade.

Nothing here fails a test: problems come back as sentences, and the session
decides which test they fail.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import file_lock
from ..errors import DataError
from ..metrics import format_quality, quality, topk
from ..modelfiles import load_inline, model_sha256
from ..models import Model
from ..runtime import ARITHMETICS, create_session, dequantized, int8_accumulation, run_session, to_model_inputs
from . import store as golden_store
from .compare import compare_top5, describe_mismatch

MAIN_ARITHMETIC = "exact"
"""The int8 arithmetic of a golden's main outputs: the ONNX specification's, which ONNX Runtime makes on
every CPU (goldens/arithmetic.py); the other one is kept beside it only where it differs."""
OTHER_ARITHMETIC = "avx2_int16_pairs"
SESSION = {"graph_optimization_level": "all", "threads": 1}
"""The session options of the golden's ONNX Runtime run that can change its outputs."""
SAME_BY_CONSTRUCTION = (
    "the same outputs: no int8 kernel of ONNX Runtime's graph has weights a saturating pair can meet "
    "(checked by the tinyaccel emulator)"
)


@dataclass
class NewGolden:
    """A golden about to be written: golden.json's content and the arrays of its files."""

    meta: dict[str, Any]
    inputs: np.ndarray
    outputs: dict[str, dict[str, np.ndarray]]
    layers: dict[str, dict[str, np.ndarray]]
    variants: dict[str, dict[str, dict[str, np.ndarray]]]
    """dtype -> arithmetic -> outputs, where an arithmetic's outputs differ from the main ones."""


def _reference_outputs(
    path: Path,
    feed: dict[str, np.ndarray],
    dtype: str,
    entry: dict[str, Any],
    variants: dict[str, dict[str, dict[str, np.ndarray]]],
) -> dict[str, np.ndarray]:
    """ONNX Runtime's outputs for a dtype's model; for int8, recorded in `entry` per arithmetic (with what
    made them), and the other arithmetic's outputs put in `variants` where they differ (what makes goldens
    loads here, when one is made)."""
    from ..ortgraph import LEVEL as ORT_GRAPH_LEVEL
    from ..ortgraph import has_qdq, ort_optimized
    from ..qonnx_route import run_qonnx
    from .arithmetic import arithmetics_differ, outputs_in

    if dtype == "fp32":
        return run_session(create_session(path), feed)
    if _qonnx_golden(path):  # QONNX that ONNX Runtime cannot run: qonnx's float executor, the same on every CPU
        entry["arithmetics"] = dict.fromkeys((MAIN_ARITHMETIC, OTHER_ARITHMETIC), QONNX_EXECUTOR)
        return run_qonnx(load_inline(path), feed)
    main = outputs_in(path, feed, MAIN_ARITHMETIC)
    entry["arithmetics"] = {MAIN_ARITHMETIC: main.made_by}
    if not arithmetics_differ(path):
        entry["arithmetics"][OTHER_ARITHMETIC] = SAME_BY_CONSTRUCTION
    else:
        other = outputs_in(path, feed, OTHER_ARITHMETIC)
        if _same_arrays(main.outputs, other.outputs):
            entry["arithmetics"][OTHER_ARITHMETIC] = other.made_by
        else:
            variants[dtype] = {OTHER_ARITHMETIC: other.outputs}
            entry["variants"] = {OTHER_ARITHMETIC: {"made_by": other.made_by}}
    import onnx

    model = onnx.load(str(path))
    integer_nodes = ort_optimized(model).integer_nodes if has_qdq(model) else ()
    if integer_nodes:  # QDQ groups ONNX Runtime runs as integer kernels: what an emulator must follow
        entry["ort_graph"] = {"level": ORT_GRAPH_LEVEL, "integer_nodes": list(integer_nodes)}
    return main.outputs


QONNX_EXECUTOR = "qonnx's executor (QONNX ops in NumPy float arithmetic; ONNX Runtime cannot run the model)"


def _qonnx_golden(path: Path) -> bool:
    """The model keeps QONNX nodes (qonnx could not express them for ONNX Runtime): qonnx's executor runs it."""
    import onnx

    from ..qonnx_route import is_qonnx

    return is_qonnx(onnx.load(str(path), load_external_data=False))


def _run(path: Path, x: np.ndarray, dtype: str) -> dict[str, np.ndarray]:
    """The reference outputs of a dtype's model for inputs `x`: ONNX Runtime (int8: in the main arithmetic),
    or qonnx's executor for a model that keeps QONNX nodes."""
    from ..qonnx_route import run_qonnx

    feed = to_model_inputs(path, x)
    if _qonnx_golden(path):
        return run_qonnx(load_inline(path), feed)
    return run_session(create_session(path, arithmetic=None if dtype == "fp32" else MAIN_ARITHMETIC), feed)


def _arithmetics(entry: dict[str, Any]) -> list[str]:
    """The int8 arithmetics a new golden's dtype entry covers."""
    return [*entry.get("arithmetics", {}), *entry.get("variants", {})]


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def onnx_version() -> str:
    """The installed onnx's version, from its package metadata while onnx is not loaded (a warm run reads no graph)."""
    loaded = sys.modules.get("onnx")
    if loaded is not None:
        return str(loaded.__version__)
    from importlib.metadata import version

    return version("onnx")


def label_for(model: Model, index: int) -> str:
    labels = model.labels
    return labels[index] if labels and index < len(labels) else f"class {index}"


class GoldenKeeper:
    """Loads goldens once per session and (with --tinyaccel-update-golden) rewrites them."""

    def __init__(
        self,
        golden_dir: Path,
        lock_dir: Path,
        dtype_model: Callable[[Model, str], Path],
        update: bool,
        dtypes: tuple[str, ...] = (),
    ) -> None:
        self.golden_dir, self.lock_dir = golden_dir, lock_dir
        self.dtype_model = dtype_model
        self.update = update
        self.dtypes = dtypes
        """With --tinyaccel-dtype: update only these; the golden keeps the others."""
        self.updates: list[str] = []
        self._loaded: dict[str, golden_store.Golden | Exception] = {}

    def get(self, model: Model) -> golden_store.Golden:
        """The model's golden, (re)written first when updating; GoldenError if missing/damaged,
        DataError if ONNX Runtime's outputs cannot make one."""
        if model.name not in self._loaded:
            try:
                if self.update:
                    self._rewrite(model)
                self._loaded[model.name] = golden_store.load(self.golden_dir / model.name)
            except (golden_store.GoldenError, DataError) as exc:
                self._loaded[model.name] = exc
        result = self._loaded[model.name]
        if isinstance(result, Exception):
            raise result
        return result

    def _rewrite(self, model: Model) -> None:
        folder = self.golden_dir / model.name
        with file_lock(self.lock_dir / f"golden-{model.name}.lock"):
            try:
                old = golden_store.load(folder)
            except (golden_store.GoldenError, DataError):
                old = None
            wanted = [d for d in model.dtypes if not self.dtypes or d in self.dtypes]
            new = self.make(model, wanted)
            if len(wanted) < len(model.dtypes):
                _keep_other_dtypes(old, model, new)
            if old is not None and _same_golden(old, new):
                return
            try:
                golden_store.write(folder, new.meta, new.inputs, new.outputs, new.layers, new.variants)
            except OSError as exc:
                raise golden_store.GoldenError(
                    f"cannot write the golden {folder}: {exc}; make the folder writable (the old golden is unchanged)"
                ) from exc
            self.updates.append(f"golden {model.name}: {'rewritten' if old else 'created'} {folder}")
            if old is not None:
                self.updates += [f"  {line}" for line in _golden_changes(old, new)]

    def make(self, model: Model, only: list[str] | None = None) -> NewGolden:
        """ONNX Runtime's outputs (int8: in each arithmetic, where they differ), Top-5, quality and
        per-kernel tensors for the dtypes `only` (default all)."""
        import onnx

        from ..intermediates import ort_intermediates

        x = model.load_x(model.ndata)
        if len(x) < model.ndata:
            raise DataError(f"{model.x_test_path.name} has {len(x)} samples, fewer than ndata={model.ndata}")
        new = NewGolden({}, x.astype(np.float32) if x.dtype.kind == "f" else x, {}, {}, {})
        dtypes = {}
        for dtype in model.dtypes if only is None else only:
            path = self.dtype_model(model, dtype)
            feed = to_model_inputs(path, new.inputs)
            entry: dict[str, Any] = {"model_sha256": model_sha256(path)}
            out = _reference_outputs(path, feed, dtype, entry, new.variants)
            for name, array in [*out.items(), *(v for a in new.variants.get(dtype, {}).values() for v in a.items())]:
                bad = int(array.size - np.isfinite(array).sum()) if array.dtype.kind == "f" else 0
                if bad:
                    raise DataError(
                        f"ONNX Runtime returns {bad} NaN/Inf values in output '{name}' of {model.name} {dtype} on the "
                        f"golden samples: no golden is written; check the model and the first ndata inputs"
                    )
            new.outputs[dtype] = out
            if model.layer_samples and not _qonnx_golden(path):  # per-kernel goldens come from ONNX Runtime
                new.layers[dtype] = ort_intermediates(path, {k: v[: model.layer_samples] for k, v in feed.items()})
            if dtype == "int8" and model.int8_onnx_path is None:
                entry["quantization"] = model.quantization
            if model.is_classification:
                probs = model.scored(dequantized(path, out))
                classes, values = topk(probs)
                entry["top5"] = [
                    [[int(c), round(float(v), 6)] for c, v in zip(cs, vs)] for cs, vs in zip(classes, values)
                ]
            reference_quality = ort_quality(model, path, dtype)
            if reference_quality is not None:
                entry["quality"] = reference_quality
            dtypes[dtype] = entry
        new.meta.update(
            model=model.name,
            model_sha256=model.sha256,
            ndata=model.ndata,
            layer_samples=model.layer_samples,
            onnxruntime=ort_version(),
            onnx=onnx.__version__,
            int8_accumulation=MAIN_ARITHMETIC,
            session=SESSION,
            dtypes=dtypes,
        )
        return new

    def stale(self, model: Model, dtype: str, golden: golden_store.Golden) -> list[str]:
        """Why `golden` no longer describes `model` in `dtype` (empty when it does)."""
        meta = golden.meta
        problems = []
        if meta["model_sha256"] != model.sha256:
            problems.append(
                f"{model.onnx_path.name} changed since the golden was written "
                f"(golden sha256 {meta['model_sha256'][:12]}, now {model.sha256[:12]})"
            )
        current = model.load_x(model.ndata)
        if meta["ndata"] != model.ndata or not np.array_equal(golden.inputs, current.astype(golden.inputs.dtype)):
            problems.append(
                f"the first ndata={model.ndata} samples of {model.x_test_path.name} differ from the golden's inputs"
            )
        entry = meta["dtypes"].get(dtype)
        if entry is None:
            problems.append(f"the golden has no {dtype} outputs (it holds {sorted(meta['dtypes'])})")
        elif not problems and entry["model_sha256"] != model_sha256(self.dtype_model(model, dtype)):
            problems.append(
                f"the {dtype} model now differs from the one the golden was made with "
                f"(golden: ONNX Runtime {meta['onnxruntime']}, installed: {ort_version()})"
            )
        return problems

    # ----- upgrade review ----------------------------------------------------------------

    def upgrade_cases(self, models: list[Model]) -> list[tuple[Model, str]]:
        """(model, dtype) pairs whose golden another ONNX Runtime made: another version, or
        (int8) one whose kernels sum 8-bit products differently from this machine's."""
        found = []
        for model in models:
            meta = self._golden_meta(model)
            if meta is not None:
                found += [(model, d) for d in model.dtypes if self.drift(meta, d)]
        return found

    @staticmethod
    def drift(meta: dict[str, Any], dtype: str) -> list[str]:
        """How the ONNX Runtime that made a golden differs from the installed one, for `dtype`."""
        found = []
        made, now = (meta.get("onnxruntime"), meta.get("onnx")), (ort_version(), onnx_version())
        if made != now:
            found.append(f"golden made by ONNX Runtime {made[0]} (onnx {made[1]}), installed {now[0]} (onnx {now[1]})")
        held = golden_store.arithmetics_of(meta, dtype)
        # a golden holding every arithmetic fits every CPU: this one's is not asked (a probe session)
        if dtype != "fp32" and not set(ARITHMETICS) <= set(held) and (here := int8_accumulation()) not in held:
            words = ", ".join(ACCUMULATION_WORDS.get(a, a) for a in held)
            found.append(f"int8 sums: golden {words}, this machine {ACCUMULATION_WORDS[here]}")
        return found

    def upgrade_header(self, models: list[Model], tolerance: float) -> str | None:
        made: dict[str, set[str]] = {}
        for model, _ in self.upgrade_cases(models):
            meta = self._golden_meta(model) or {}
            key = f"{meta.get('onnxruntime')}, {meta.get('int8_accumulation', 'exact')} int8 sums"
            made.setdefault(key, set()).add(model.name)
        if not made:
            return None
        listed = "; ".join(f"{k} ({', '.join(sorted(v))})" for k, v in sorted(made.items()))
        return (
            f"tinyaccel: goldens were made with ONNX Runtime {listed}, installed is {ort_version()} "
            f"({int8_accumulation()} int8 sums): upgrade review on (test_upgrade_review), Top-5 tolerance {tolerance:g}"
        )

    def _golden_meta(self, model: Model) -> dict[str, Any] | None:
        try:
            return golden_store.load_meta(self.golden_dir / model.name)
        except (golden_store.GoldenError, DataError):
            return None

    def review(self, model: Model, dtype: str, tolerance: float, accuracy_margin: float) -> tuple[list[str], list[str]]:
        """The stored golden against the installed ONNX Runtime's outputs on the same inputs:
        (problems that fail the review, notes for the summary). Quality is compared on
        every review: the runtime's kernels can change while the model bytes do not."""
        from ..qonnx_route import run_qonnx

        golden = self.get(model)
        meta, entry = golden.meta, golden.meta["dtypes"].get(dtype)
        if entry is None:
            return [f"{model.name}: the golden has no {dtype} outputs"], []
        path = self.dtype_model(model, dtype)
        feed = to_model_inputs(path, golden.inputs)  # this CPU's ONNX Runtime, as the cpu target runs it
        new = run_qonnx(load_inline(path), feed) if _qonnx_golden(path) else run_session(create_session(path), feed)
        expected, _ = golden.expected(dtype, int8_accumulation() if dtype != "fp32" else None)
        head = "; ".join(
            [f"{model.name} {dtype}: ONNX Runtime {meta['onnxruntime']} -> {ort_version()}"]
            + [d for d in self.drift(meta, dtype) if d.startswith("int8 sums")]
        )
        problems, notes = [], []
        parts = [head]
        digest = model_sha256(path)
        if entry["model_sha256"] != digest:
            model_part = f"the {dtype} model changed (sha256 {entry['model_sha256'][:12]} -> {digest[:12]})"
        else:
            model_part = f"the {dtype} model is byte-identical"
        parts.append(model_part)
        changed = [
            f"'{name}' {int((new[name] != exp).sum())} of {exp.size} values changed"
            for name, exp in expected.items()
            if new[name].shape == exp.shape and not np.array_equal(new[name], exp)
        ]
        parts.append(", ".join(changed) if changed else "outputs on the golden samples unchanged")
        old_q, new_q = entry.get("quality"), ort_quality(model, path, dtype)
        if old_q and new_q:
            delta = 100 * (new_q["value"] - old_q["value"])
            change = (
                f"{format_quality(model.metric, old_q['value'])} -> {format_quality(model.metric, new_q['value'])}"
                f" ({delta:+.2f} pts) on the first {new_q['samples']} samples"
            )
            parts.append(change)
            if -delta > accuracy_margin:
                problems.append(f"{head}: {model_part}; {change}, more than the allowed {accuracy_margin:g} pts")
        notes.append(f"{head}: " + "; ".join(parts[1:]))
        if model.is_classification:
            probs = model.scored(dequantized(path, new))
            bad, table = compare_top5(entry["top5"], probs, tolerance, lambda c: label_for(model, c))
            if bad:
                problems.append(
                    f"{head}: Top-5 changed in {bad} place(s) (classes in order, probabilities within "
                    f"{tolerance:g})\n{table}"
                )
        else:
            tols = {name: model.tolerance_for("cpu", dtype, {}, name) for name in expected}
            problems += [
                f"{head}: {p}"
                for name, exp in expected.items()
                if model.role(name) != "ignore"
                and (p := describe_mismatch(name, new[name], exp, tols[name]["atol"], tols[name]["rtol"]))
            ]
        return problems, notes


def _keep_other_dtypes(old: golden_store.Golden | None, model: Model, new: NewGolden) -> None:
    """An update limited by --tinyaccel-dtype keeps the other dtypes of the old golden, when that
    golden was made from the same model and inputs; otherwise they cannot be kept."""
    others = [d for d in model.dtypes if d not in new.meta["dtypes"]]
    same = (
        old is not None
        and old.meta["model_sha256"] == new.meta["model_sha256"]
        and np.array_equal(old.inputs, new.inputs)
        and all(d in old.meta["dtypes"] for d in others)
    )
    if not same:
        raise DataError(
            f"{model.name}: the model or its golden inputs changed, so the golden's {', '.join(others)} outputs "
            "cannot be kept; update every dtype (run --tinyaccel-update-golden without --tinyaccel-dtype)"
        )
    assert old is not None
    for dtype in others:
        new.meta["dtypes"][dtype] = {
            k: v for k, v in old.meta["dtypes"][dtype].items() if k not in ("outputs", "layers")
        }
        new.outputs[dtype] = old.outputs[dtype]
        if dtype in old.variants:
            new.variants[dtype] = old.variants[dtype]
        kept = old.layers(dtype)
        if kept:
            new.layers[dtype] = kept


ACCUMULATION_WORDS = {"exact": "exact int32", "avx2_int16_pairs": "AVX2 int16-saturating pairs (no VNNI)"}
ACCUMULATION_ADVICE = (
    "ONNX Runtime on x86 CPUs without VNNI adds pairs of uint8 x int8 products in saturating int16; "
    "a golden made by this plugin's version keeps the outputs of both arithmetics where they differ"
)


def ort_quality(model: Model, path: Path, dtype: str) -> dict[str, Any] | None:
    """ONNX Runtime's own quality for a dtype's model (int8 in the main arithmetic, the same on every CPU):
    what the upgrade review compares to."""
    y = model.load_y()
    if y is None:
        return None
    n = min(model.samples, len(y))
    x = model.load_x(n)
    out = model.scored(dequantized(path, _run(path, x, dtype)))
    try:
        value = quality(model.metric, out, y[:n], x.astype(np.float32), model.scored_role)
    except ValueError:
        return None
    return {"metric": model.metric, "samples": n, "value": round(value, 6)}


def _same_golden(old: golden_store.Golden, new: NewGolden) -> bool:
    """True when rewriting would not change a byte."""
    new_meta = {**new.meta, "format": golden_store.FORMAT}
    new_meta["dtypes"] = {
        d: {k: v for k, v in e.items() if k != "variants"} | _made_by(e) for d, e in new.meta["dtypes"].items()
    }
    old_meta = {k: v for k, v in old.meta.items() if k != "files"}
    old_meta["dtypes"] = {
        d: {k: v for k, v in e.items() if k not in ("outputs", "layers", "variants")} | _made_by(e)
        for d, e in old_meta["dtypes"].items()
    }
    return (
        old_meta == new_meta
        and np.array_equal(old.inputs, new.inputs)
        and _same_arrays(old.outputs, new.outputs)
        and _same_arrays(old.variants, new.variants)
    )


def _made_by(entry: dict[str, Any]) -> dict[str, Any]:
    """What made each variant of a dtype entry, without its file names."""
    variants = entry.get("variants")
    return {"variants": {a: v["made_by"] for a, v in variants.items()}} if variants else {}


def _same_arrays(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Nested dicts of arrays with the same keys and equal arrays."""
    if old.keys() != new.keys():
        return False
    return all(_same_arrays(old[k], v) if isinstance(v, dict) else np.array_equal(old[k], v) for k, v in new.items())


def _golden_changes(old: golden_store.Golden, new: NewGolden) -> list[str]:
    """What an update changed, for the reviewer: versions, hashes, output deltas, arithmetics, Top-5, quality."""
    meta, inputs, outputs = new.meta, new.inputs, new.outputs
    lines = []
    for key in ("onnxruntime", "onnx", "int8_accumulation", "model_sha256", "ndata", "layer_samples"):
        before = old.meta.get(key, "exact" if key == "int8_accumulation" else None)
        if before != meta.get(key):
            lines.append(f"{key}: {before} -> {meta.get(key)}")
    if old.inputs.shape != inputs.shape or not np.array_equal(old.inputs, inputs):
        lines.append("inputs changed")
    for dtype, named in outputs.items():
        before, entry = old.meta["dtypes"].get(dtype), meta["dtypes"][dtype]
        if before is None:
            lines.append(f"{dtype}: added")
            continue
        parts = []
        if before["model_sha256"] != entry["model_sha256"]:
            parts.append(f"model sha256 {before['model_sha256'][:12]} -> {entry['model_sha256'][:12]}")
        for name, array in named.items():
            prev = old.outputs[dtype].get(name)
            if prev is not None and prev.shape == array.shape:
                diff = np.abs(prev.astype(np.float64) - array.astype(np.float64))
                parts.append(
                    f"'{name}' max |change| {diff.max():.3g}, {int((diff > 0).sum())} of {diff.size} values changed"
                )
        held, now = sorted(old.arithmetics(dtype)), sorted(_arithmetics(entry))
        if dtype != "fp32" and held != now:
            parts.append(f"int8 arithmetics {', '.join(held)} -> {', '.join(now)}")
        if "top5" in entry and before.get("top5") is not None:
            moved = sum(a[0] != b[0] for x, y in zip(before["top5"], entry["top5"]) for a, b in zip(x, y))
            parts.append(f"Top-5 classes changed in {moved} place(s)")
        if entry.get("quality") and before.get("quality"):
            parts.append(
                f"{entry['quality']['metric']} {before['quality']['value']:.4f} -> {entry['quality']['value']:.4f}"
            )
        lines.append(f"{dtype}: " + "; ".join(parts))
    return lines
