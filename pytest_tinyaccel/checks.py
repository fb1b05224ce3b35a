"""The standard checks, without pytest: each takes what it judges (a case's outcome, its
golden, the baseline) and returns a `Finding` when something is wrong (or the check
cannot judge: `Finding.skipped`), None when the check passes. Only the pytest-facing
views turn a finding into `pytest.fail` or `pytest.skip`; the run record keeps it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .baseline import Baseline
from .baseline import compare as compare_rows
from .cases import Case
from .errors import DataError
from .errorstats import error_stats
from .goldens import store as golden_store
from .goldens.compare import compare_top5, describe_mismatch
from .goldens.keeper import ACCUMULATION_ADVICE, GoldenKeeper, label_for
from .margins import parse_margins
from .metrics import format_quality, topk
from .models import Model
from .options import Options
from .record import Finding, Top5Sample
from .runner import USER_ERRORS, Outcome, golden_reference
from .targets.base import Target, TargetUnsupported


@dataclass
class CheckContext:
    """What the checks of one run share: options, targets, goldens and the baseline."""

    options: Options
    registry: dict[str, Target]
    goldens: GoldenKeeper
    baseline: Baseline | None

    def tolerance(self, case: Case, output: str | None = None) -> dict[str, float]:
        """atol/rtol of the case, for `output` when given (its [outputs."<name>"] tolerances)."""
        target = self.registry[case.target]
        return case.model.tolerance_for(
            case.target, case.dtype, {case.dtype: target.default_tolerance_for(case.model, case.dtype)}, output
        )

    def margins_for(self, case: Case) -> dict[str, float]:
        """Built-in defaults < ini/command line < the manifest's [targets.<target>] max_regression."""
        margins = dict(self.options.margins)
        spec = case.model.targets.get(case.target, {}).get("max_regression")
        if spec is not None:
            margins.update(parse_margins(spec, f"{case.model.manifest_path}: targets.{case.target}.max_regression"))
        return margins

    def update_command(self, nodeid: str) -> str:
        """The command that rewrites this test's golden, with the user's own path options."""
        return " ".join([f"pytest '{nodeid}'", *self.options.path_args, "--tinyaccel-update-golden"])


def could_not_run(case: Case, check: str, error: BaseException, said_before: bool, strict: bool) -> Finding:
    """A case whose build or run stopped with an error a user can act on: said in full by the
    case's first failed check; later checks point there. A model the target cannot run at all is
    a skip naming what it lacks and the manifest key that says so (a failure when `strict`)."""
    if not isinstance(error, USER_ERRORS):
        raise error  # a crash: pytest shows the traceback
    if isinstance(error, TargetUnsupported) and not strict:
        return Finding(case.id, check, f"{error}; {unsupported_hint(case)}", skipped=True)
    if said_before:
        first = str(error).splitlines()[0]
        message = f"{case.id}: {first[:200]}\n  (the full message is in this case's first failed check)"
        return Finding(case.id, check, message)
    return Finding(case.id, check, f"{case.id}: {error}")


def unsupported_hint(case: Case) -> str:
    """How to say in the manifest that a target does not run a model, or fail such cases instead."""
    return (
        f'to record it, set [targets.{case.target}] skip = "<why>" in {case.model.dir.name}/model.toml; '
        "to fail on it, tinyaccel_strict_support = true"
    )


def current_golden(ctx: CheckContext, case: Case, check: str, nodeid: str) -> golden_store.Golden | Finding:
    """The golden for `case`, or a finding when it is missing or stale."""
    try:
        golden = ctx.goldens.get(case.model)
    except (golden_store.GoldenError, DataError) as exc:
        return Finding(case.id, check, f"{case.id}: {exc}\n  to create it: {ctx.update_command(nodeid)}")
    problems = ctx.goldens.stale(case.model, case.dtype, golden)
    if problems:
        message = (
            f"{case.id}: golden {ctx.options.golden_dir / case.model.name} is stale: "
            + "; ".join(problems)
            + f"\n  review, then run: {ctx.update_command(nodeid)}"
        )
        return Finding(case.id, check, message)
    return golden


def golden(
    ctx: CheckContext, case: Case, outcome: Outcome, reference: golden_store.Golden, nodeid: str
) -> Finding | None:
    """Outputs on the golden samples np.allclose to ONNX Runtime's; on a mismatch, what differs, the
    error statistics, the first diverging layer and any runtime drift."""
    ndata = case.model.ndata
    target = ctx.registry[case.target]
    expected_outputs, made_by = golden_reference(reference, case, target, outcome.build)
    problems = []
    for name, expected in expected_outputs.items():
        if case.model.role(name) == "ignore":  # [outputs."<name>"] role = "ignore"
            continue
        tol = ctx.tolerance(case, name)
        got = outcome.outputs[name][:ndata]
        problem = describe_mismatch(name, got, expected, tol["atol"], tol["rtol"])
        if problem:
            stats = outcome.row.error_stats.get(name) or error_stats(got, expected)
            problems.append(problem + (f"\n  error statistics: {stats.describe()}" if stats else ""))
    if not problems:
        return None
    feed = {k: v[:ndata] for k, v in outcome.feed.items()}
    where = target.localize(
        outcome.build, feed, ctx.tolerance(case, case.model.scored_output), reference.layers(case.dtype)
    )
    arithmetic = target.int8_arithmetic(outcome.build) if case.dtype != "fp32" else None
    checked = f" (its {arithmetic} int8 outputs, made by {made_by})" if made_by else ""
    message = f"{case.id}: outputs on the {ndata} golden samples do not match ONNX Runtime{checked}\n"
    message += "\n".join(problems)
    if where:
        message += "\n" + where
    obtained = {k: v[:ndata] for k, v in outcome.outputs.items()}
    tols = {name: ctx.tolerance(case, name) for name in expected_outputs}
    from .goldens.diagnosis import diagnose  # on a mismatch only: it runs ONNX Runtime again

    message += "\n" + diagnose(reference, case.dtype, outcome.build.onnx_path, obtained, arithmetic, tols)
    drift = ctx.goldens.drift(reference.meta, case.dtype)
    if drift:
        if any(d.startswith("int8 sums") for d in drift):
            drift.append(ACCUMULATION_ADVICE)
        message += (
            "\nnote: " + "; ".join(drift) + ".\n  The upgrade review (pytest -k upgrade_review) compares "
            f"both runtimes on this model; after review, regenerate: {ctx.update_command(nodeid)}"
        )
    return Finding(case.id, "golden", message, where=where or None)


def accuracy(case: Case, outcome: Outcome) -> Finding | None:
    """Quality on the first N test samples at or above the manifest's quality target."""
    model = case.model
    if model.y_test_path is None:
        return Finding(case.id, "accuracy", outcome.quality_error or f"{model.name} has no labelled test set", True)
    if outcome.quality is None:
        return Finding(case.id, "accuracy", f"{case.id}: {outcome.quality_error}")
    if model.quality_target is None:
        measured = format_quality(model.metric, outcome.quality)
        return Finding(
            case.id,
            "accuracy",
            f"{model.manifest_path} gives no quality_target: {measured} on the first {outcome.samples} test samples "
            "is reported, not gated; set quality_target to gate it",
            True,
        )
    if outcome.quality < model.quality_target:
        return Finding(
            case.id,
            "accuracy",
            f"{case.id}: {format_quality(model.metric, outcome.quality)} on the first {outcome.samples} "
            f"test samples is below the quality target {format_quality(model.metric, model.quality_target)}",
        )
    return None


def top5(
    ctx: CheckContext, case: Case, outcome: Outcome, reference: golden_store.Golden, nodeid: str
) -> Finding | None:
    """Top-5 classes (in order) and probabilities of the golden samples as in the reference."""
    model = case.model
    expected = reference.top5(case.dtype)
    if expected is None:
        message = (
            f"{case.id}: the golden holds no Top-5 reference for {case.dtype}; "
            f"regenerate it: {ctx.update_command(nodeid)}"
        )
        return Finding(case.id, "top5", message)
    probs = model.scored(outcome.float_outputs)[: model.ndata]  # the declared output ([outputs])
    # A target allowed to be atol off cannot be held to a tighter probability tolerance.
    tol = max(model.top5_tolerance, ctx.tolerance(case, model.scored_output)["atol"])
    bad, table = compare_top5(expected, probs, tol, lambda c: label_for(model, c))
    if not bad:
        return None
    message = (
        f"{case.id}: Top-5 differs from the golden reference in {bad} place(s) "
        f"(same classes in order, probabilities within {tol:g} required)\n{table}"
    )
    samples = top5_samples(expected, probs, tol, lambda c: label_for(model, c))
    return Finding(case.id, "top5", message, top5=samples, tolerance=tol)


def top5_samples(
    reference: list[list[list[float]]], probs: np.ndarray, tolerance: float, label: Callable[[int], str]
) -> list[Top5Sample]:
    """The samples whose Top-5 the check rejects (its own rule, `compare_top5`), with labels on both sides."""
    classes, values = topk(probs, 5)
    found = []
    for i, ref in enumerate(reference):
        bad, _ = compare_top5([ref], probs[i : i + 1], tolerance, label)
        if bad:
            found.append(
                Top5Sample(
                    i,
                    [(label(int(c)), float(p)) for c, p in ref],
                    [(label(int(c)), float(p)) for c, p in zip(classes[i], values[i])],
                )
            )
    return found


def baseline(ctx: CheckContext, case: Case, outcome: Outcome) -> Finding | None:
    """Latency, throughput, accuracy (and SQNR when asked) no worse than the baseline by more than the margins.
    A case the baseline lacks is a skip saying 'new'."""
    if ctx.baseline is None:
        return Finding(case.id, "baseline", "no --tinyaccel-baseline given", True)
    base = ctx.baseline.get(case.id)
    if base is None:
        return Finding(case.id, "baseline", f"new: {case.id} has no row in the baseline {ctx.baseline.path}", True)
    changes = compare_rows(outcome.row, base, ctx.margins_for(case))
    if not any(c.regressed for c in changes):
        return None
    lines = [f"{'REGRESSED ' if c.regressed else 'ok        '}{c.describe()}" for c in changes]
    message = f"{case.id}: worse than the baseline {ctx.baseline.path}\n  " + "\n  ".join(lines)
    return Finding(case.id, "baseline", message)


def upgrade_review(ctx: CheckContext, model: Model, dtype: str, nodeid: str) -> tuple[Finding | None, list[str]]:
    """After an ONNX Runtime upgrade: the stored golden against the new version's outputs.
    Returns the finding (None when the golden still holds) and notes on what changed."""
    try:
        problems, notes = ctx.goldens.review(
            model, dtype, ctx.options.upgrade_tolerance, ctx.options.margins["accuracy"]
        )
    except USER_ERRORS as exc:
        problems, notes = [f"{model.name} {dtype}: {exc}"], []
    if not problems:
        return None, notes
    message = "\n".join(problems) + f"\n  after review: {ctx.update_command(nodeid)}"
    return Finding(f"{model.name}-{dtype}", "upgrade_review", message), notes
