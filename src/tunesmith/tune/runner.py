"""`tunesmith tune CONFIG`, top to bottom: config → space and test-file checks (before any trial) → study
database → trials (each in a process of its own, up to `--jobs K` at once, `scheduler.py`) → the study's table.

A rerun of the same command joins the same study: finished trials stay, `tune.trials` counts them, and a trial
that a kill or a signal stopped continues from its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
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
from tunesmith.tune.scheduler import schedule
from tunesmith.tune.space import check_space, resolve_space
from tunesmith.tune.study import STUDY_FILE, StudyPlan, finished, load_study, recover_orphans, storage_url

CONFIG_ATTR = "tunesmith:config"  # study user attr: hash of the config the study was started with
# Settings of how to run the study, not of what it compares: a rerun may change them.
_RUN_SETTINGS = ("trials", "timeout", "jobs", "storage", "step_budget")


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


def run_study(plan: StudyPlan, cfg: Config, quiet: bool = True) -> optuna.Study:
    """The whole study: cut-short trials queued again, then trial processes until tune's budget is spent."""
    study = open_study(plan, cfg)
    deadline = time.time() + plan.tune.timeout if plan.tune.timeout else None
    for number in recover_orphans(study):  # once, before any trial starts: each cut-short trial is queued once
        err.print(f"trial {number} was cut short (killed or interrupted); it is queued again and resumes its run")
    done = len(finished(study))
    err.print(
        f"study {plan.name}: {done} of {plan.tune.trials} trials finished, sampler {plan.tune.sampler}, pruner "
        f"{plan.tune.pruner}, {plan.tune.jobs} job(s); database {plan.storage_url.split('://')[0]}; trials in "
        f"{plan.folder}/"
    )
    schedule(plan, cfg.train.eval_every, deadline, quiet)
    return load_study(plan, cfg.train.eval_every)


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The best complete (and feasible) trial."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise UserError(f"study {study.study_name} has no complete trial yet")
    try:
        return study.best_trial
    except ValueError as exc:  # every complete trial breaks a constraint
        raise UserError(f"study {study.study_name}: {exc}") from None
