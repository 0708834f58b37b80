"""What a training run reports: `RunSummary`, returned by `run_train` and written as the run's summary.json."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from tunesmith.compat.fused import FusedOps
from tunesmith.config import Config
from tunesmith.data.prepare import Prepared
from tunesmith.environment import run_environment
from tunesmith.methods import count_parameters, parameter_report
from tunesmith.train.loop import LoopResult, steps_per_epoch
from tunesmith.train.metrics_log import read_metrics
from tunesmith.train.run_dir import write_json
from tunesmith.train.run_folder import RunFolder


@dataclass
class RunSummary:
    """What trained, for how long, and how well. The validation numbers are those of the exported (best) weights.

    In summary.json the task metrics (`val_metrics`, e.g. val_accuracy) sit at the top level beside the rest."""

    task: str
    model: str
    method: str
    export: str  # the exported folder (adapter/ or model/)
    base_val_loss: float | None
    tuned_val_loss: float | None  # the best evaluation's loss: the exported weights are the best ones
    best_step: int | None
    best_metric: str
    best_score: float | None
    steps: int
    planned_steps: int
    stopped_early: bool
    epochs: float
    train_tokens_seen: int
    train_seconds: float
    wall_seconds: float
    eval_seconds: float
    train_tokens_per_s: float
    trainable_params: int
    total_params: int
    parameters: dict[str, Any]
    train_examples: int
    val_examples: int
    data_hash: str
    val_metrics: dict[str, float] = field(default_factory=dict)  # at the best step, e.g. val_accuracy
    train_padding_fraction: float | None = None  # share of the forward passes' tokens that were padding
    base_val_perplexity: float | None = None  # language-modelling objectives only
    tuned_val_perplexity: float | None = None
    fused_ops: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)  # library versions and the project's commit
    labels: list[str] | None = None  # classify, ner: the label set in id order
    stop_reason: str | None = None  # why training stopped before planned_steps: early_stopping, pruned
    collapse_warning: dict[str, Any] | None = None  # the first validation pass that looked collapsed

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(data.pop("val_metrics"))
        return {k: v for k, v in data.items() if v is not None or k in _ALWAYS}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSummary:
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        metrics = {k: v for k, v in data.items() if k.startswith("val_") and k not in names}
        return cls(**known, val_metrics=metrics)

    @classmethod
    def read(cls, run_dir: Path) -> RunSummary:
        return cls.from_json(json.loads(RunFolder(run_dir).summary.read_text()))


# Written even when None, as summary.json always had them.
_ALWAYS = {"base_val_loss", "tuned_val_loss", "best_step", "best_score"}


@dataclass(frozen=True)
class TrainedRun:
    """What `run_train` returns: the run folder and its summary."""

    path: Path
    summary: RunSummary


def summarise(
    cfg: Config,
    model: nn.Module,
    result: LoopResult,
    fused: FusedOps,
    prepared: Prepared,
    run_dir: Path,
    export_dir: Path,
    wall: float,
    labels: list[str] | None,
) -> RunSummary:
    """The run's summary, written to summary.json."""
    trainable, total = count_parameters(model)
    state = result.state
    summary = RunSummary(
        task=cfg.task.name,
        model=cfg.model.name,
        method=cfg.method.name,
        export=str(export_dir),
        base_val_loss=state.base_val_loss,
        tuned_val_loss=state.best_val_loss,
        best_step=state.best_step,
        best_metric=cfg.train.best_metric,
        best_score=state.best_score,
        steps=state.step,
        planned_steps=result.total_steps,
        stopped_early=result.stopped_early,
        epochs=round(state.step / max(steps_per_epoch(len(prepared.train), cfg.train), 1), 3),
        train_tokens_seen=state.tokens_seen,
        train_padding_fraction=_padding_fraction(state.tokens_seen, state.padded_tokens_seen),
        train_seconds=round(result.train_seconds, 1),
        wall_seconds=round(wall, 1),
        eval_seconds=round(result.eval_seconds, 1),
        train_tokens_per_s=round(state.tokens_seen / max(result.train_seconds - result.eval_seconds, 1e-9), 1),
        trainable_params=trainable,
        total_params=total,
        parameters=parameter_report(model),
        train_examples=len(prepared.train),
        val_examples=len(prepared.val),
        data_hash=prepared.report["data_hash"],
        val_metrics=_best_metrics(run_dir, state.best_step),
        fused_ops=_fused_report(fused),
        environment=run_environment(),
        labels=labels,
        stop_reason=result.stop_reason,
        collapse_warning=_first_collapse(run_dir),
    )
    if "val_perplexity" in summary.val_metrics:  # exp(cross-entropy) of a classifier is no perplexity
        summary.base_val_perplexity = math.exp(min(state.base_val_loss or 0.0, 50))
        tuned = state.best_val_loss
        summary.tuned_val_perplexity = math.exp(min(tuned, 50)) if tuned is not None else None
    write_json(RunFolder(run_dir).summary, summary.to_json())
    return summary


def _best_metrics(run_dir: Path, best_step: int | None) -> dict[str, float]:
    """The task metrics logged at the evaluation that gave the best (exported) weights."""
    rows = [r for r in read_metrics(RunFolder(run_dir).metrics) if r.get("step") == best_step and "val_loss" in r]
    return {k: v for k, v in rows[-1].items() if k.startswith("val_") and k != "val_loss"} if rows else {}


def _first_collapse(run_dir: Path) -> dict[str, Any] | None:
    """Step and numbers of the first validation pass whose label predictions looked collapsed (`CollapseWatch`)."""
    for row in read_metrics(RunFolder(run_dir).metrics):
        if row.get("val_collapse") == 1.0:
            return {
                "step": row.get("step"),
                "top_label_share": row.get("val_top_label_share"),
                "message": "one label predicted for most validation rows, or accuracy rose while macro-F1 fell "
                "against the base; see metrics.jsonl (val_collapse) and consider train.best_metric=macro_f1",
            }
    return None


def _padding_fraction(tokens: int, padded: int) -> float | None:
    """None when unknown: a run resumed from a checkpoint written before padded tokens were counted."""
    return round(1 - tokens / padded, 4) if padded >= tokens > 0 else None


def _fused_report(fused: FusedOps) -> dict[str, Any]:
    return {
        "used": fused.kernels,
        "skipped": fused.skipped,
        "failed": fused.failed,
        "setup_seconds": round(fused.seconds, 1),
        "training_calls": fused.calls,
        "restore_problems": fused.restore_problems,
    }
