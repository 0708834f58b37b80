"""What a study found: open a finished or running study by name, its trials as a table, the Pareto front of
several objectives, and the best trial as a normal config (`best.yaml`)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState
from rich.table import Table

from tunesmith.config.load import read_yaml, validate
from tunesmith.config.schema import Config
from tunesmith.config.tune import ObjectiveSpec
from tunesmith.databases import with_driver
from tunesmith.errors import UserError
from tunesmith.tune.progress import duration, format_params, trial_seconds
from tunesmith.tune.study import DIVERGED_ATTR, STUDY_DB, STUDY_FILE
from tunesmith.tune.trial import trial_dir


@dataclass
class OpenedStudy:
    study: optuna.Study
    folder: Path
    cfg: Config  # the study's config (study.yaml)

    @property
    def objectives(self) -> list[ObjectiveSpec]:
        return self.cfg.tune.objective


def study_folder(name: str, output_dir: str = "runs") -> Path:
    """A study folder given as a path, or a study name under ./runs."""
    for candidate in (Path(name), Path(output_dir) / name):
        if (candidate / "study.yaml").is_file():
            return candidate
    raise UserError(f"no study {name!r}: neither {name} nor {Path(output_dir) / name} holds a study.yaml")


def find_study(name: str, storage: str | None = None) -> OpenedStudy:
    """The study of a folder made by `tunesmith tune` (its SQLite database, or `storage` for a server one)."""
    folder = study_folder(name)
    cfg = validate(read_yaml(folder / "study.yaml"), str(folder / "study.yaml"))
    info = json.loads((folder / STUDY_FILE).read_text()) if (folder / STUDY_FILE).is_file() else {}
    url = storage or (info.get("storage") if str(info.get("storage", "")).startswith("sqlite") else None)
    url = url or f"sqlite:///{(folder / STUDY_DB).resolve()}"
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise UserError(f"{folder}: no study database at {url}; pass --storage URL for a server database")
    url = with_driver(url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            study = optuna.load_study(study_name=info.get("name", folder.name), storage=url)
        except KeyError:
            raise UserError(f"the database {url.split('://')[0]} holds no study {folder.name!r}") from None
    return OpenedStudy(study, folder, cfg)


def objective_values(trial: FrozenTrial) -> dict[str, float]:
    return dict(trial.user_attrs.get("values", {}))


def pareto_front(trials: list[FrozenTrial], objectives: list[ObjectiveSpec]) -> list[FrozenTrial]:
    """Complete, feasible trials that no other such trial beats on every objective (and strictly on one)."""
    points = []
    for trial in trials:
        values = objective_values(trial)
        if trial.state == TrialState.COMPLETE and all(spec.metric in values for spec in objectives):
            if all(v <= 0 for v in trial.constraints.values()):
                signs = [1 if spec.maximize else -1 for spec in objectives]
                points.append((trial, [s * values[spec.metric] for s, spec in zip(signs, objectives, strict=True)]))

    def dominated(a: list[float]) -> bool:
        return any(all(x >= y for x, y in zip(b, a, strict=True)) and b != a for _, b in points)

    return [trial for trial, point in points if not dominated(point)]


def trial_cells(opened: OpenedStudy, trial: FrozenTrial) -> list[str]:
    """One trial as plain text: number, state, every objective, parameters, steps, time (`TRIAL_COLUMNS`)."""
    values = objective_values(trial)
    state = "diverged" if DIVERGED_ATTR in trial.user_attrs else trial.state.name.lower()
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        state += f" @{max(trial.intermediate_values)}"
    if trial.system_attrs.get("failed_trial") is not None:
        state += f" (retry of {trial.system_attrs['failed_trial']})"
    seconds = trial_seconds(trial)
    return [
        str(trial.number),
        state,
        *(f"{values[s.metric]:.4g}" if s.metric in values else "" for s in opened.objectives),
        format_params(trial.params),
        str(trial.user_attrs.get("steps", "")),
        duration(seconds) if seconds is not None else "",
    ]


def trial_columns(opened: OpenedStudy) -> list[str]:
    return ["trial", "state", *(spec.metric for spec in opened.objectives), "params", "steps", "time"]


def trials_table(opened: OpenedStudy) -> Table:
    """Every trial: number, state, objective values, parameters, steps, time."""
    table = Table(title=f"study {opened.study.study_name}", title_justify="left")
    for column in trial_columns(opened):
        table.add_column(column, justify="right" if column not in ("state", "params") else "left")
    for trial in opened.study.get_trials(deepcopy=False):
        table.add_row(*trial_cells(opened, trial))
    return table


def best_config(opened: OpenedStudy, trial: FrozenTrial) -> dict[str, Any]:
    """The best trial's run config as a normal config: its own values, a fresh run name, no tune section."""
    folder = trial_dir(trial)
    if folder is None or not (folder / "config.yaml").is_file():
        raise UserError(f"trial {trial.number} has no run folder with a config.yaml")
    data = read_yaml(folder / "config.yaml")
    data.pop("tune", None)
    data.get("run", {}).pop("name", None)
    data.get("run", {})["output_dir"] = str(Path(opened.cfg.run.output_dir))
    validate(data, str(folder / "config.yaml"))
    return data


def write_best(opened: OpenedStudy, trial: FrozenTrial) -> Path:
    path = opened.folder / "best.yaml"
    header = f"# best trial {trial.number} of study {opened.study.study_name}: {objective_values(trial)}\n"
    path.write_text(header + yaml.safe_dump(best_config(opened, trial), sort_keys=False))
    return path


def evaluate_on_test(opened: OpenedStudy, trial: FrozenTrial, test: str) -> tuple[dict[str, Any], Path]:
    """Score the best trial (and the base) once on the held-out test file, refused when it overlaps the data
    the study selected on; saved as test_eval.json in the trial's folder."""
    from tunesmith.evaluate.runner import evaluate_run
    from tunesmith.train.run_dir import write_json
    from tunesmith.tune.guard import check_test_file

    check_test_file(opened.cfg, test)
    folder = trial_dir(trial)
    if folder is None:
        raise UserError(f"trial {trial.number} has no run folder")
    report = evaluate_run(folder, test)
    path = folder / "test_eval.json"
    write_json(path, report)
    return report, path
