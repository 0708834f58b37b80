"""Trials in processes of their own: the tuner starts one process per trial, up to `tune.jobs` at once, and
decides from the study database whether another may start (trials, time, optimizer steps).

A fresh process per trial means nothing one trial leaves behind (allocator arenas, caches, a leak in a library)
reaches the next: a trial's peak RSS is its own, which a memory objective needs, and a crash ends one trial, not
the tuner. Each trial process leaves the terminal's process group (a Ctrl-C reaches it once, passed on by the
tuner) and asks Linux for a SIGTERM when the tuner dies, so even a `kill -9` of the tuner checkpoints the trial.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import time
import warnings
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess

import optuna

from tunesmith.errors import NonFiniteLossError, TrainingInterrupted, UserError
from tunesmith.output import err
from tunesmith.tune.progress import TrialLine
from tunesmith.tune.signals import StudyStop
from tunesmith.tune.study import STARTED, StudyPlan, finished, grid_size, load_study
from tunesmith.tune.trial import run_trial

PR_SET_PDEATHSIG = 1  # linux/prctl.h: the signal this process gets when its parent dies
STAGGER_SECONDS = 1.0  # between the first trials of a parallel study, so they do not all sample before any starts


def budget_spent(study: optuna.Study, plan: StudyPlan, deadline: float | None, running: int = 0) -> str | None:
    """Why no other trial may start (trials counting the `running` ones, grid points, time, optimizer steps), or
    None while the budget lasts."""
    if len(finished(study)) + running >= plan.tune.trials:
        return ""  # the study's own end: the table says it
    points = grid_size(plan.tune)
    if points is not None and len(study.get_trials(deepcopy=False, states=STARTED)) >= points:
        return f"every one of the {points} grid points has a trial; no new trial starts"
    if deadline is not None and deadline <= time.time():
        return "tune.timeout reached; no new trial starts"
    budget = plan.tune.step_budget
    if budget is not None and sum(t.user_attrs.get("steps", 0) for t in study.get_trials(deepcopy=False)) >= budget:
        return f"tune.step_budget of {budget} optimizer steps spent; no new trial starts"
    return None


def schedule(plan: StudyPlan, eval_every: int, deadline: float | None, quiet: bool) -> None:
    """Start trial processes until the budget is spent; wait for them. A signal to the tuner is passed on to the
    running trials (each checkpoints) and the tuner then exits 128 + signal."""
    study = load_study(plan, eval_every)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch state shared with a fork
    running: list[BaseProcess] = []
    started = 0

    def forward(signum: int) -> None:
        for process in running:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    said: set[str] = set()
    with StudyStop(forward) as stop:
        while True:
            spent = budget_spent(study, plan, deadline, len(running))
            if spent and spent not in said:
                err.print(spent)
                said.add(spent)
            if spent is None and stop.signum is None and len(running) < plan.tune.jobs:
                args = (plan, eval_every, deadline, quiet, started, os.getpid())
                process = context.Process(target=trial_main, args=args)
                process.start()
                running.append(process)
                started += 1
                if len(running) < plan.tune.jobs:
                    time.sleep(STAGGER_SECONDS)
                continue
            if not running:
                break
            wait([p.sentinel for p in running])
            running = _reap(running, stop)
        stop.check()


def _reap(running: list[BaseProcess], stop: StudyStop) -> list[BaseProcess]:
    """The processes still running; a trial process that failed stops the study (its own error line is above)."""
    alive = [p for p in running if p.is_alive()]
    for process in running:
        if process in alive:
            continue
        process.join()
        code = process.exitcode or 0
        # a passed-on signal: the trial checkpointed (128 + signal), or the process had not yet installed handlers
        if code == 0 or (stop.signum is not None and code in (128 + stop.signum, -stop.signum)):
            continue
        for other in alive:  # the study stops: the others checkpoint their trials
            other.terminate()
        for other in alive:
            other.join()
        if code < 0:
            raise UserError(
                f"a trial process was killed by signal {-code} (out of memory?); the same command queues its trial "
                "again and continues the study"
            )
        raise UserError(f"a trial process failed (exit code {code}; its error is above); the study stops")
    return alive


def trial_main(plan: StudyPlan, eval_every: int, deadline: float | None, quiet: bool, index: int, tuner: int) -> None:
    """A trial process: one trial of the study (a queued retry first), then exit."""
    from tunesmith.logs import capture_library_output

    os.setpgid(0, 0)
    _die_with(tuner)
    capture_library_output(verbose=os.environ.get("TUNESMITH_VERBOSE") == "1")
    try:
        study = load_study(plan, eval_every, worker=index)
        with StudyStop() as stop, warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.optimize(
                lambda trial: run_trial(trial, plan, stop, quiet)[0],
                n_trials=1,
                callbacks=[TrialLine(plan.tune, deadline)],
                catch=(NonFiniteLossError,),  # a diverged trial fails alone; any other error stops the study
            )
    except UserError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(exc.exit_code)
    except TrainingInterrupted as interrupted:
        sys.exit(interrupted.exit_code)


def _die_with(tuner: int) -> None:
    """SIGTERM this process when the tuner dies (Linux), so its trial checkpoints instead of running on alone."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != tuner:  # the tuner died before the request took effect
        sys.exit(128 + signal.SIGTERM)
