"""What a trial scored: each objective read from the trained run, and the primary one at every validation pass
(for the pruner). The numbers are those of the run's exported (best) weights, as summary.json reports them."""

from __future__ import annotations

import math
import os
import resource
import sys
from pathlib import Path

from tunesmith.config.tune import ObjectiveSpec
from tunesmith.errors import UserError
from tunesmith.recipes.summary import RunSummary
from tunesmith.train.metrics_log import read_metrics
from tunesmith.train.run_folder import RunFolder


def validation_value(spec: ObjectiveSpec, val_loss: float, metrics: dict[str, float]) -> float | None:
    """The primary objective at one validation pass; None for objectives no validation pass measures."""
    if spec.metric == "loss":
        return val_loss
    if spec.metric in ("train_seconds", "peak_rss_mb"):
        return None
    if spec.metric not in metrics:
        raise UserError(
            f"tune.objective {spec.metric}: the validation pass reports {', '.join(['loss', *metrics]) or 'loss'}; "
            f"for sft add it to train.eval_metrics (scored on the validation rows at every pass)"
        )
    return metrics[spec.metric]


def run_value(spec: ObjectiveSpec, summary: RunSummary, run_dir: Path) -> float:
    """One objective of a finished (or pruned) trial."""
    if spec.metric == "loss":
        value = summary.tuned_val_loss
    elif spec.metric == "train_seconds":
        value = summary.train_seconds
    elif spec.metric == "peak_rss_mb":
        value = max((row.get("peak_rss_mb", 0) for row in read_metrics(RunFolder(run_dir).metrics)), default=None)
    else:
        value = summary.val_metrics.get(f"val_{spec.metric}")
    if value is None or not math.isfinite(value):
        raise UserError(f"tune.objective {spec.metric}: the run {run_dir} did not report it (see its summary.json)")
    return float(value)


def constraint(spec: ObjectiveSpec, value: float) -> float | None:
    """Optuna's constraint value (feasible when <= 0) for an objective with a bound; None without one."""
    if spec.max is not None:
        return value - spec.max
    if spec.min is not None:
        return spec.min - value
    return None


def reset_peak_rss() -> bool:
    """Start this process's peak-RSS count afresh (Linux), so each trial reports its own peak; False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open(f"/proc/{os.getpid()}/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
