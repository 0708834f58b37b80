"""One line per finished trial: which trial, its values, pruned or not, the best so far, and the ETA of the
study's budget (trials left × the mean trial time, shared by the workers; capped by tune.timeout)."""

from __future__ import annotations

import time

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.markup import escape

from tunesmith.config.tune import TuneConfig
from tunesmith.output import err
from tunesmith.tune.study import DIVERGED_ATTR, finished


def format_params(params: dict[str, object]) -> str:
    return " ".join(f"{key.split('.')[-1]}={_short(value)}" for key, value in params.items())


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trial_seconds(trial: FrozenTrial) -> float | None:
    """Wall seconds from start to finish; None for a trial still running (or never started)."""
    if trial.datetime_complete is None or trial.datetime_start is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class TrialLine:
    """An Optuna callback printing the line."""

    def __init__(self, tune: TuneConfig, deadline: float | None):
        self.tune, self.deadline = tune, deadline

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        done = finished(study)
        metric = self.tune.primary.metric
        if trial.state == TrialState.COMPLETE:
            outcome = f"{metric} {trial.value:.4g}"
        elif trial.state == TrialState.PRUNED:
            step = max(trial.intermediate_values, default=None)
            outcome = f"[yellow]pruned[/] at step {step}" if step is not None else "[yellow]pruned[/]"
        elif DIVERGED_ATTR in trial.user_attrs:
            outcome = "[red]diverged[/] (loss NaN/Inf)"
        else:
            outcome = f"[red]{trial.state.name.lower()}[/]"
        seconds = trial_seconds(trial) or 0
        err.print(
            f"trial {trial.number} ({len(done)}/{self.tune.trials}): {outcome} · {escape(format_params(trial.params))}"
            f" · {duration(seconds)} · {self._best(study)} · {self._eta(done)}",
            highlight=False,
        )

    def _best(self, study: optuna.Study) -> str:
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            return "no complete trial yet"
        try:
            best = study.best_trial
        except ValueError:
            return "no feasible trial yet"
        return f"best {best.value:.4g} (trial {best.number})"

    def _eta(self, done: list[FrozenTrial]) -> str:
        timed = [seconds for t in done if (seconds := trial_seconds(t)) is not None]
        left = self.tune.trials - len(done)
        if left <= 0:
            return "study complete"
        if not timed:
            return f"{left} trial(s) left"
        mean = sum(timed) / len(timed)
        eta = mean * left / self.tune.jobs
        if self.deadline is not None:
            eta = min(eta, max(0.0, self.deadline - time.time()))
        return f"ETA {duration(eta)}"
