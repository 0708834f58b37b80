"""What an evaluation during training decides: is this the best model so far (by `train.best_metric`), and is
the run overfitting (the metric got worse while the train loss fell, `train.overfit_patience` evaluations in a
row)? The loop (`train/loop.py`) calls `judge` once per evaluation and logs what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.config.schema import TrainConfig
from tunesmith.errors import UserError
from tunesmith.train.checkpoint import TrainState


@dataclass(frozen=True)
class BestMetric:
    """The metric that picks the best weights, and which way is better."""

    name: str = "loss"
    higher_is_better: bool = False

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> BestMetric:
        if cfg.best_mode != "auto":
            return cls(cfg.best_metric, cfg.best_mode == "max")
        if cfg.best_metric == "loss":
            return cls()
        from tunesmith.metrics import METRICS

        return cls(cfg.best_metric, METRICS[cfg.best_metric].higher_is_better)

    def better(self, new: float, old: float | None) -> bool:
        return old is None or (new > old if self.higher_is_better else new < old)

    def value(self, val_loss: float, metrics: dict[str, float]) -> float:
        """This evaluation's value of the metric; a UserError when the evaluation does not compute it."""
        if self.name == "loss":
            return val_loss
        if self.name not in metrics:
            computed = ", ".join(["loss", *metrics]) or "loss"
            raise UserError(
                f"train.best_metric {self.name!r} is not computed during training (computed: {computed}); "
                f"add it to train.eval_metrics"
            )
        return metrics[self.name]


@dataclass
class Judgement:
    score: float
    is_best: bool
    overfit_warning: bool
    log: dict[str, Any]  # extra fields for metrics.jsonl


def judge(
    state: TrainState,
    best: BestMetric,
    val_loss: float,
    metrics: dict[str, float],
    train_loss: float | None,
    patience: int | None,
) -> Judgement:
    """Update `state` (best score, streaks) with one evaluation; `train_loss` is the mean since the previous one."""
    score = best.value(val_loss, metrics)
    is_best = best.better(score, state.best_score)
    if is_best:
        state.best_score, state.best_val_loss, state.best_step, state.evals_since_best = score, val_loss, state.step, 0
    else:
        state.evals_since_best += 1
    log: dict[str, Any] = {"best_metric": best.name, "is_best": is_best}
    if train_loss is not None:
        log["train_loss_mean"] = train_loss
        log["train_val_gap"] = val_loss - train_loss
        worse = state.last_score is not None and best.better(state.last_score, score)
        fell = state.last_train_loss is not None and train_loss < state.last_train_loss
        state.overfit_streak = state.overfit_streak + 1 if worse and fell else 0
        state.last_train_loss = train_loss
    state.last_score = score
    warning = patience is not None and state.overfit_streak >= patience
    log["overfit_streak"] = state.overfit_streak
    if warning:
        log["overfit_warning"] = True
    return Judgement(score, is_best, warning, log)
