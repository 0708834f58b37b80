"""The study and its database: storage URL, samplers and pruners (plain-dict registries), heartbeats, and the
trials a killed worker left behind.

Optuna owns the study: its RDB storage (SQLite by default, PostgreSQL or any SQLAlchemy URL) records every trial,
and its heartbeat marks a trial whose worker died as failed, after which `RetryHeartbeatStaleTrialCallback` queues
the same parameters again. tunesmith adds what Optuna cannot know: the retry continues the dead trial's run
folder from its last checkpoint (`trial.py`), and a dead worker on this machine is noticed at once, by its pid,
instead of after the heartbeat's grace period.
"""

from __future__ import annotations

import math
import os
import socket
import sqlite3
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from tunesmith.config.tune import TuneConfig
from tunesmith.databases import masked, with_driver
from tunesmith.errors import UserError

STUDY_DB = "study.db"
STUDY_FILE = "study.json"  # in the study folder: its name and SQLite database, for `tune show` / `tune best`
WORKER_ATTR = "tunesmith:worker"  # system attr of a running trial: where its worker runs
DIVERGED_ATTR = "diverged"  # user attr of a trial whose loss became NaN/Inf: why, and it counts as finished
INTERRUPTED_ATTR = "tunesmith:interrupted"  # user attr of a trial stopped by a signal: resumed on the next run
STARTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)  # trials that took a grid point


@dataclass(frozen=True)
class StudyPlan:
    """Everything a worker needs to join the study and run trials, picklable for worker processes."""

    name: str
    folder: Path  # runs/<study>: the trials' run folders (and study.db by default)
    storage_url: str
    base: dict[str, Any]  # the study's raw config (YAML plus --set), before any suggested value
    config_path: str
    tune: TuneConfig
    method: str  # the config's method, for conditional method.* keys
    threads: int | None = None  # torch threads per trial (cores split between --jobs workers)


def storage_url(tune: TuneConfig, folder: Path) -> str:
    """The study database: --storage, or SQLite in the study folder. `postgresql://` means the psycopg 3 driver."""
    if tune.storage is None:
        return f"sqlite:///{(folder / STUDY_DB).resolve()}"
    return with_driver(tune.storage)


def _sqlite_wal(url: str) -> None:
    """Write-ahead logging lets readers and one writer work at once: two workers on one SQLite study wait for each
    other (with the busy timeout) instead of failing with "database is locked". The mode is kept in the file."""
    path = Path(url.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path, timeout=60) as db:
        db.execute("PRAGMA journal_mode=WAL")


def open_storage(url: str, tune: TuneConfig) -> RDBStorage:
    """The study database with heartbeats on; a trial silent for 3 heartbeats is failed and queued again."""
    engine: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        _sqlite_wal(url)
        engine = {"connect_args": {"timeout": 120}}
    else:
        engine = {"pool_pre_ping": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=tune.heartbeat_seconds,
                grace_period=3 * tune.heartbeat_seconds,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=tune.max_retries),
            )
        except Exception as exc:  # SQLAlchemy raises many types; the user needs the URL and the reason
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"cannot open the study database {masked(url)}: {reason}") from None


SAMPLERS: dict[str, Callable[[TuneConfig], optuna.samplers.BaseSampler]] = {
    "tpe": lambda t: optuna.samplers.TPESampler(
        seed=t.seed, multivariate=True, n_startup_trials=t.startup_trials, constant_liar=t.jobs > 1
    ),
    "random": lambda t: optuna.samplers.RandomSampler(seed=t.seed),
    "grid": lambda t: optuna.samplers.GridSampler(_grid(t), seed=t.seed),
    "qmc": lambda t: optuna.samplers.QMCSampler(seed=t.seed, warn_independent_sampling=False),
}


def _grid(tune: TuneConfig) -> dict[str, list[Any]]:
    return {key: spec.grid_values() for key, spec in (tune.space or {}).items()}


def grid_size(tune: TuneConfig) -> int | None:
    """The number of grid points for the grid sampler; None for the others."""
    if tune.sampler != "grid":
        return None
    return math.prod(len(values) for values in _grid(tune).values())


def _warmup_steps(tune: TuneConfig, eval_every: int) -> int:
    return tune.warmup_evals * eval_every


# Intermediate values are reported at the optimizer step of each validation pass.
PRUNERS: dict[str, Callable[[TuneConfig, int], optuna.pruners.BasePruner]] = {
    "median": lambda t, every: optuna.pruners.MedianPruner(
        n_startup_trials=t.startup_trials, n_warmup_steps=_warmup_steps(t, every)
    ),
    "successive_halving": lambda t, every: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=max(every, _warmup_steps(t, every))
    ),
    "hyperband": lambda t, every: optuna.pruners.HyperbandPruner(min_resource=max(every, _warmup_steps(t, every))),
    "none": lambda t, every: optuna.pruners.NopPruner(),
}


def load_study(plan: StudyPlan, eval_every: int, worker: int = 0) -> optuna.Study:
    """Create the study, or join it when it exists (a rerun, another worker, another machine).

    The sampler's seed is tune.seed offset by the trials already in the study and by the trial process's index: a
    rerun or another trial process draws new values instead of repeating the first one's random (startup) trials,
    and the same command on the same study still draws the same values. The grid sampler keeps tune.seed: it
    numbers the grid points in an order shuffled by its seed and gives trial k point k."""
    tune = plan.tune
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own line per trial says what Optuna's log would
    storage = open_storage(plan.storage_url, tune)
    direction = "maximize" if tune.primary.maximize else "minimize"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            study_name=plan.name,
            storage=storage,
            sampler=optuna.samplers.RandomSampler(),  # replaced below, once the trials so far are known
            pruner=PRUNERS[tune.pruner](tune, eval_every),
            direction=direction,
            load_if_exists=True,
        )
        seed = tune.seed + len(study.get_trials(deepcopy=False)) + 100_003 * worker
        if tune.sampler == "grid":  # its grid order is shuffled by the seed: every process must use the same
            seed = tune.seed
        study.sampler = SAMPLERS[tune.sampler](tune.model_copy(update={"seed": seed}))
        return study


def worker_id() -> dict[str, Any]:
    """Where this process runs: host, pid and the pid's start time (a reused pid has another start time)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_time(os.getpid())}


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _dead_here(worker: dict[str, Any] | None) -> bool:
    """True for a worker of this machine whose process is gone."""
    if not worker or worker.get("host") != socket.gethostname():
        return False
    pid = int(worker.get("pid", 0))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    started = worker.get("started")
    return started is not None and _start_time(pid) != started


def recover_orphans(study: optuna.Study) -> list[int]:
    """Queue again the trials a killed worker of this machine left RUNNING, and the trials a signal interrupted,
    each once; returns their numbers. A worker on another machine is left to the heartbeat."""
    storage = study._storage
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=None)
    trials = study.get_trials(deepcopy=False)
    retried = {number for t in trials for number in t.system_attrs.get("retry_history", [])}
    recovered = []
    for trial in trials:
        orphan = trial.state == TrialState.RUNNING and _dead_here(trial.system_attrs.get(WORKER_ATTR))
        interrupted = trial.state == TrialState.FAIL and trial.user_attrs.get(INTERRUPTED_ATTR)
        if trial.number in retried or not (orphan or interrupted):
            continue
        if orphan:
            try:
                storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker got there first
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry(study, _frozen(storage, trial))
        recovered.append(trial.number)
    return recovered


def _frozen(storage: Any, trial: FrozenTrial) -> FrozenTrial:
    return storage.get_trial(trial._trial_id)


def finished(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that count toward `tune.trials`: complete, pruned, or failed because training diverged (a retry
    would diverge again; an interrupted trial is not finished, its retry is)."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [
        t
        for t in study.get_trials(deepcopy=False, states=states)
        if t.state != TrialState.FAIL or DIVERGED_ATTR in t.user_attrs
    ]
