"""`tunesmith tune CONFIG`, top to bottom: config → space and test-file checks (before any trial) → study
database → trials (in this process, or `--jobs K` worker processes sharing the study) → the study's table.

A rerun of the same command joins the same study: finished trials stay, `tune.trials` counts them, and a trial
that a kill or a signal stopped continues from its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from tunesmith.config.load import apply_override, read_yaml, validate
from tunesmith.config.schema import Config
from tunesmith.errors import UserError
from tunesmith.output import err
from tunesmith.tune.guard import check_test_file
from tunesmith.tune.progress import TrialLine
from tunesmith.tune.signals import StudyStop
from tunesmith.tune.space import check_space, resolve_space
from tunesmith.tune.study import (
    STUDY_FILE,
    StudyPlan,
    finished,
    grid_size,
    load_study,
    recover_orphans,
    storage_url,
)
from tunesmith.tune.trial import run_trial

CONFIG_ATTR = "tunesmith:config"  # study user attr: hash of the config the study was started with
# Settings of how to run the study, not of what it compares: a rerun may change them.
_RUN_SETTINGS = ("trials", "timeout", "jobs", "storage", "step_budget")
_STARTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def plan_study(config_path: str, overrides: list[str]) -> tuple[StudyPlan, Config]:
    """Read and check everything a study needs; every user mistake surfaces here, before any trial."""
    base = read_yaml(Path(config_path))
    for assignment in overrides:
        apply_override(base, assignment)
    cfg = validate(base, config_path)
    tune = cfg.tune
    name = tune.study or Path(config_path).stem
    if not name or "/" in name or name in (".", ".."):
        raise UserError(f"tune.study {name!r} must be a plain name (it names the folder runs/<study>)")
    folder = Path(cfg.run.output_dir) / name
    check_space(base, resolve_space(cfg), config_path)
    if tune.test is not None:
        check_test_file(cfg, tune.test)
    cores = os.cpu_count() or 1
    threads = max(1, cores // tune.jobs) if tune.jobs > 1 else cfg.train.threads
    plan = StudyPlan(name, folder, storage_url(tune, folder), base, config_path, tune, cfg.method.name, threads)
    return plan, cfg


def config_hash(base: dict[str, Any]) -> str:
    """What the trials compare on: the config without the settings of how the study runs."""
    data = json.loads(json.dumps(base, default=str))
    for key in _RUN_SETTINGS:
        data.get("tune", {}).pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def open_study(plan: StudyPlan, cfg: Config) -> optuna.Study:
    """Create or join the study; refuse to join one that was started from another config."""
    plan.folder.mkdir(parents=True, exist_ok=True)
    study = load_study(plan, cfg.train.eval_every)
    digest = config_hash(plan.base)
    started_with = study.user_attrs.get(CONFIG_ATTR)
    if started_with is None:
        study.set_user_attr(CONFIG_ATTR, digest)
        (plan.folder / "study.yaml").write_text(yaml.safe_dump(plan.base, sort_keys=False))
    elif started_with != digest:
        raise UserError(
            f"study {plan.name!r} in {plan.storage_url.split('://')[0]} was started from another config (the "
            "space, data, method or objective changed); choose a new name with --study, or use the old config"
        )
    info = {"name": plan.name, "storage": plan.storage_url if plan.storage_url.startswith("sqlite") else "server"}
    (plan.folder / STUDY_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return study


def _budget_left(study: optuna.Study, plan: StudyPlan, deadline: float | None) -> bool:
    """Whether another trial may start: trials, time and optimizer steps all within tune's budget."""
    if len(finished(study)) >= plan.tune.trials:
        return False
    points = grid_size(plan.tune)
    if points is not None and len(study.get_trials(deepcopy=False, states=_STARTED)) >= points:
        err.print(f"every one of the {points} grid points has a trial; no new trial starts")
        return False
    if deadline is not None and deadline <= time.time():
        err.print("tune.timeout reached; no new trial starts")
        return False
    budget = plan.tune.step_budget
    if budget is not None and sum(t.user_attrs.get("steps", 0) for t in study.get_trials(deepcopy=False)) >= budget:
        err.print(f"tune.step_budget of {budget} optimizer steps spent; no new trial starts")
        return False
    return True


def work(plan: StudyPlan, cfg: Config, deadline: float | None, quiet: bool = True, worker: int = 0) -> None:
    """One worker: join the study and run trials until tune's budget (trials, time, steps) is spent, or a
    signal stops it (exit 128 + signal, the trial in progress checkpointed and queued again)."""
    study = load_study(plan, cfg.train.eval_every, worker)
    line = TrialLine(plan.tune, deadline)
    parent = os.getppid()
    with StudyStop() as stop:
        while _budget_left(study, plan, deadline):
            stop.check()
            if worker and os.getppid() != parent:
                err.print(f"worker {worker}: the tuner that started it is gone; no new trial starts")
                return
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.optimize(
                    lambda trial: run_trial(trial, plan, stop, quiet)[0],
                    n_trials=1,
                    callbacks=[line],
                    catch=(),
                )
        stop.check()


def _worker_main(plan: StudyPlan, deadline: float | None, worker: int) -> None:
    """Entry of a `--jobs` worker process: its own quiet logging, user mistakes as one line. It leaves the
    terminal's process group, so a Ctrl-C reaches it once, passed on by the tuner, not twice."""
    import sys

    from tunesmith.errors import TrainingInterrupted
    from tunesmith.logs import capture_library_output

    os.setpgid(0, 0)
    capture_library_output(verbose=False)
    try:
        work(plan, validate(plan.base, plan.config_path), deadline, worker=worker)
    except UserError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(exc.exit_code)
    except TrainingInterrupted as stop:
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


def run_study(plan: StudyPlan, cfg: Config, quiet: bool = True) -> optuna.Study:
    """The whole study: in this process for one job, else `tune.jobs` worker processes on the shared database."""
    study = open_study(plan, cfg)
    deadline = time.time() + plan.tune.timeout if plan.tune.timeout else None
    for number in recover_orphans(study):  # once, before any worker starts: each cut-short trial is queued once
        err.print(f"trial {number} was cut short (killed or interrupted); it is queued again and resumes its run")
    done = len(finished(study))
    err.print(
        f"study {plan.name}: {done} of {plan.tune.trials} trials finished, sampler {plan.tune.sampler}, pruner "
        f"{plan.tune.pruner}, {plan.tune.jobs} job(s); database {plan.storage_url.split('://')[0]}; trials in "
        f"{plan.folder}/"
    )
    if plan.tune.jobs == 1:
        work(plan, cfg, deadline, quiet)
    else:
        _run_workers(plan, deadline)
    return load_study(plan, cfg.train.eval_every)


def _run_workers(plan: StudyPlan, deadline: float | None) -> None:
    """`tune.jobs` spawned workers on the shared database; a signal to the tuner is passed on to each of them,
    and the tuner exits as they do."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch state shared with a fork
    workers = [context.Process(target=_worker_main, args=(plan, deadline, i + 1)) for i in range(plan.tune.jobs)]

    def forward(signum: int) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signum)

    with StudyStop(forward) as stop:
        for worker in workers:
            stop.check()
            worker.start()
            time.sleep(1.0)  # staggered, so the first trials do not all sample before any has started
        for worker in workers:
            worker.join()
        stop.check()
    codes = [worker.exitcode for worker in workers]
    if any(code not in (0, None) for code in codes):
        raise UserError(f"{sum(c != 0 for c in codes)} of {len(codes)} tune workers failed (exit codes {codes})")


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The best complete (and feasible) trial."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise UserError(f"study {study.study_name} has no complete trial yet")
    try:
        return study.best_trial
    except ValueError as exc:  # every complete trial breaks a constraint
        raise UserError(f"study {study.study_name}: {exc}") from None
