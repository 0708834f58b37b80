"""One trial: suggested values → a run config → an ordinary training run in runs/<study>/trial-NNNN → its
objective values. The pruner reads the primary objective at every validation pass; a pruned run stops there
like early stopping does (best weights kept and exported), so every trial folder works with eval and report.

A retried trial (its worker was killed, or a signal stopped it) continues the original trial's folder from its
newest checkpoint, not from step 0.
"""

from __future__ import annotations

import contextlib
import gc
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback

from tunesmith.config.load import validate
from tunesmith.config.schema import Config
from tunesmith.config.tune import ObjectiveSpec
from tunesmith.errors import NonFiniteLossError, TrainingInterrupted
from tunesmith.output import silenced
from tunesmith.recipes.train import run_train
from tunesmith.train.checkpoint import TrainState
from tunesmith.train.memory import release_freed_memory
from tunesmith.train.run_folder import RunFolder
from tunesmith.tune.measures import constraint, reset_peak_rss, run_value, validation_value
from tunesmith.tune.signals import StudyStop
from tunesmith.tune.space import config_data, resolve_space, suggest_params
from tunesmith.tune.study import DIVERGED_ATTR, INTERRUPTED_ATTR, WORKER_ATTR, StudyPlan, worker_id

RUN_ATTR = "run"  # user attr: the trial's run folder


def trial_folder_name(number: int) -> str:
    return f"trial-{number:04d}"


def run_number(trial: optuna.Trial) -> int:
    """The trial number whose run folder this trial uses: the original one for a retry."""
    frozen = trial.storage.get_trial(trial._trial_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        original = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
    return trial.number if original is None else int(original)


def trial_config(plan: StudyPlan, params: dict[str, Any], folder_name: str) -> Config:
    """The study's config with the trial's values, its run folder under the study, and the primary objective
    picking the exported weights (so the objective is measured on the weights the trial keeps)."""
    data = config_data(plan.base, params)
    data.pop("tune", None)  # the study's settings are not the run's: a rerun may change them (trials, jobs...)
    data.setdefault("run", {}).update(output_dir=str(plan.folder), name=folder_name)
    train = data.setdefault("train", {})
    primary = plan.tune.primary.metric
    if primary not in ("train_seconds", "peak_rss_mb"):
        train["best_metric"], train["best_mode"] = primary, "auto"
        if primary != "loss" and data.get("task", {}).get("name", "sft") == "sft":
            train["eval_metrics"] = sorted({*(train.get("eval_metrics") or []), primary})
    if plan.threads:
        train["threads"] = plan.threads
    return validate(data, plan.config_path)


class PruneAtValidation:
    """An `on_evaluate` hook: report the primary objective to Optuna and stop the run when the pruner says so."""

    def __init__(self, trial: optuna.Trial, spec: ObjectiveSpec):
        self.trial, self.spec = trial, spec
        self.pruned_at: int | None = None

    def __call__(self, state: TrainState, val_loss: float, metrics: dict[str, float], last: bool) -> str | None:
        value = validation_value(self.spec, val_loss, metrics)
        if value is None:
            return None
        self.trial.report(value, state.step)
        if not last and self.trial.should_prune():  # the last pass saves nothing: the trial completes
            self.pruned_at = state.step
            return "pruned"
        return None


def run_trial(trial: optuna.Trial, plan: StudyPlan, stop: StudyStop, quiet: bool = True) -> list[float]:
    """Train one trial and record its objective values (in `tune.objective` order); raises optuna.TrialPruned
    for a pruned one, after recording what it reached. A signal that came before training began stops here,
    and the trial is queued again on the next run."""
    trial.storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, worker_id())
    cfg = validate(plan.base, plan.config_path)
    params = suggest_params(trial, resolve_space(cfg), plan.method)
    name = trial_folder_name(run_number(trial))
    run_cfg = trial_config(plan, params, name)
    folder = RunFolder(plan.folder / name)
    resume = folder.config.is_file()
    trial.set_user_attr(RUN_ATTR, str(folder.path))
    pruner = PruneAtValidation(trial, plan.tune.primary)
    reset_peak_rss()
    try:
        stop.check()
        with silenced() if quiet else contextlib.nullcontext():
            trained = run_train(run_cfg, plan.config_path, resume=resume, on_evaluate=[pruner])
    except TrainingInterrupted:
        trial.set_user_attr(INTERRUPTED_ATTR, True)
        raise
    except NonFiniteLossError as diverged:  # a failed trial (the study goes on), not a failed study
        trial.set_user_attr(DIVERGED_ATTR, str(diverged))
        raise
    finally:
        gc.collect()
        release_freed_memory()
    values = [run_value(spec, trained.summary, trained.path) for spec in plan.tune.objective]
    _record(trial, plan, values, trained.summary.steps, resume)
    if pruner.pruned_at is not None:
        raise optuna.TrialPruned(f"pruned at step {pruner.pruned_at}")
    return values


def _record(trial: optuna.Trial, plan: StudyPlan, values: list[float], steps: int, resumed: bool) -> None:
    """Every objective as a user attr (the Pareto front reads them), bounded ones as constraints."""
    trial.set_user_attr("values", {spec.metric: value for spec, value in zip(plan.tune.objective, values, strict=True)})
    trial.set_user_attr("steps", steps)
    trial.set_user_attr("resumed", resumed)
    for spec, value in zip(plan.tune.objective, values, strict=True):
        if (bound := constraint(spec, value)) is not None:
            trial.set_constraint(spec.metric, bound)


def trial_dir(trial: optuna.trial.FrozenTrial) -> Path | None:
    run = trial.user_attrs.get(RUN_ATTR)
    return Path(run) if run else None
