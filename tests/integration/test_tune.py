"""`tunesmith tune` end to end on a tiny model: a study with pruning, kill -9 then the same command again, two
workers on one SQLite study, a real PostgreSQL study, the test-file guard, best.yaml, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tunesmith.config import load_config
from tunesmith.recipes.train import run_train

pytestmark = pytest.mark.integration

TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))
ENV = {**os.environ, "TUNESMITH_ALLOCATOR": "system"}


def write_study(folder: Path, model: Path, data: Path, train: dict | None = None, **tune) -> Path:
    config = {
        "model": {"name": str(model)},
        "data": {"train": str(data), "max_length": 64},
        "run": {"output_dir": str(folder / "runs")},
        "train": {
            "max_steps": 8,
            "batch_size": 4,
            "eval_every": 2,
            "save_every": 2,
            "precision": "fp32",
            **(train or {}),
        },
        "eval": {"batch_size": 8},
        "tune": {"trials": 4, "startup_trials": 1, "heartbeat_seconds": 1, **tune},
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def tune(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([TUNESMITH, "tune", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def trials_of(folder: Path, name: str = "study") -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{folder / 'runs' / name / 'study.db'}"
    return optuna.load_study(study_name=name, storage=storage).get_trials()


LR_SPACE = {"train.lr": {"type": "categorical", "choices": [3e-2, 1e-7]}}


def test_study_prunes_a_bad_trial_and_every_trial_is_a_run(tiny_model_dir, qa_data, tmp_path):
    # seed 4 draws lr 3e-2 three times, then 1e-7: the median of good trials prunes the bad one
    study = {"sampler": "random", "pruner": "median", "space": LR_SPACE, "trials": 6, "seed": 4}
    path = write_study(tmp_path, tiny_model_dir, qa_data, **study)
    result = tune(str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = trials_of(tmp_path)
    states = [t.state for t in trials]
    assert len(trials) == 6 and TrialState.RUNNING not in states and TrialState.FAIL not in states
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.params["train.lr"] == 1e-7 for t in pruned), [(t.state, t.params) for t in trials]
    assert "pruned at step" in result.stderr and "(6/6)" in result.stderr
    for trial in trials:  # an ordinary run folder: summary, export, metrics
        run = Path(trial.user_attrs["run"])
        summary = json.loads((run / "summary.json").read_text())
        assert (run / "adapter" / "adapter_model.safetensors").is_file()
        if trial.state == TrialState.PRUNED:
            assert summary["stop_reason"] == "pruned" and summary["steps"] < 8
    assert (tmp_path / "runs" / "study" / "tune.html").is_file()
    best = tune("best", str(tmp_path / "runs" / "study"), cwd=tmp_path)
    assert best.returncode == 0, best.stderr
    cfg = load_config(tmp_path / "runs" / "study" / "best.yaml", ["run.name=best", "train.max_steps=2"])
    assert cfg.train.lr == 3e-2 and cfg.tune.space is None  # a normal config: the trial's values, no search
    assert run_train(cfg).summary.steps == 2


def test_two_objectives_record_a_pareto_front_and_constraints(tiny_model_dir, qa_data, tmp_path):
    objective = ["loss", {"metric": "peak_rss_mb", "max": 100_000}]
    path = write_study(
        tmp_path, tiny_model_dir, qa_data, sampler="random", pruner="none", trials=2, objective=objective
    )
    result = tune(str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for trial in trials_of(tmp_path):
        assert set(trial.user_attrs["values"]) == {"loss", "peak_rss_mb"}
        assert 0 < trial.user_attrs["values"]["peak_rss_mb"] < 100_000
        assert trial.constraints["peak_rss_mb"] < 0  # feasible: below the bound
    page = (tmp_path / "runs" / "study" / "tune.html").read_text()
    assert "Pareto front" in page and page.count("data:image/png;base64,") >= 4


def test_best_scores_the_held_out_test_file_once(tiny_model_dir, qa_data, tmp_path):
    test = tmp_path / "held-out.jsonl"
    rows = [{"prompt": f"Spell the word {w}.", "completion": f"{w}"} for w in ("porto", "maria", "paris")]
    test.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = write_study(tmp_path, tiny_model_dir, qa_data, sampler="random", pruner="none", trials=1, test=str(test))
    assert tune(str(path), cwd=tmp_path).returncode == 0
    best = tune("best", "study", cwd=tmp_path)  # a study name under ./runs
    assert best.returncode == 0, best.stderr
    saved = json.loads((tmp_path / "runs" / "study" / "trial-0000" / "test_eval.json").read_text())
    assert saved["rows"] == 3 and saved["data"].endswith("held-out.jsonl")


def _wait_for_checkpoint(folder: Path, process: subprocess.Popen, limit: float = 120) -> None:
    started = time.time()
    while time.time() - started < limit:
        if list(folder.glob("checkpoints/step-*/state.json")):
            return
        assert process.poll() is None, "the tuner ended before the trial wrote a checkpoint"
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint in {folder} after {limit} s")


def test_kill9_then_the_same_command_continues_the_study_and_the_trial(tiny_model_dir, qa_data, tmp_path):
    train = {"max_steps": 60, "eval_every": 5, "save_every": 5}
    space = {"train.lr": {"type": "log_uniform", "low": 1e-3, "high": 3e-2}}
    path = write_study(tmp_path, tiny_model_dir, qa_data, train, pruner="none", space=space, trials=3)
    log = (tmp_path / "first.log").open("w")
    process = subprocess.Popen([TUNESMITH, "tune", str(path)], cwd=tmp_path, env=ENV, stdout=log, stderr=log)
    study_dir = tmp_path / "runs" / "study"
    _wait_for_checkpoint(study_dir / "trial-0001", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first_summary = (study_dir / "trial-0000" / "summary.json").read_bytes()
    assert [t.state for t in trials_of(tmp_path)] == [TrialState.COMPLETE, TrialState.RUNNING]

    again = tune(str(path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "trial 1 was cut short" in again.stderr
    trials = trials_of(tmp_path)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3 and not [t for t in trials if t.state == TrialState.RUNNING]
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == 1)
    assert retry.params == trials[1].params and retry.user_attrs["run"].endswith("trial-0001")
    resumes = json.loads((study_dir / "trial-0001" / "resumes.json").read_text())["resumes"]
    assert resumes[0]["from_step"] >= 5  # continued from its checkpoint, not from step 0
    assert (study_dir / "trial-0000" / "summary.json").read_bytes() == first_summary  # not repeated
    assert sorted(p.name for p in study_dir.glob("trial-*")) == ["trial-0000", "trial-0001", "trial-0003"]


def test_sigterm_checkpoints_the_trial_and_the_next_run_resumes_it(tiny_model_dir, qa_data, tmp_path):
    train = {"max_steps": 100, "eval_every": 5, "save_every": 5}
    path = write_study(tmp_path, tiny_model_dir, qa_data, train, pruner="none", sampler="random", trials=2)
    process = subprocess.Popen(
        [TUNESMITH, "tune", str(path)],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own: the tuner and its trial process
    )
    study_dir = tmp_path / "runs" / "study"
    _wait_for_checkpoint(study_dir / "trial-0000", process)
    # The whole group is frozen mid-training (the trial process too: freezing the tuner alone let the trial finish
    # before the passed-on signal reached it), so the signal cannot land after the trial's end.
    os.killpg(process.pid, signal.SIGSTOP)
    steps = sorted(study_dir.glob("trial-0000/checkpoints/step-*"))
    assert not (study_dir / "trial-0000" / "summary.json").exists(), f"the trial ended first: {steps}"
    process.send_signal(signal.SIGTERM)  # to the tuner, as a user would; it passes the signal on to its trial
    os.killpg(process.pid, signal.SIGCONT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143 and "the same command continues the study" in stderr, stderr
    assert "Traceback" not in stderr
    again = tune(str(path), cwd=tmp_path)
    assert again.returncode == 0 and "trial 0 was cut short" in again.stderr, again.stderr
    resumes = json.loads((study_dir / "trial-0000" / "resumes.json").read_text())["resumes"]
    assert resumes[0]["from_step"] >= 5
    finished = [t for t in trials_of(tmp_path) if t.state == TrialState.COMPLETE]
    assert len(finished) == 2


def test_sigterm_to_the_tuner_stops_every_worker_and_the_next_run_resumes_their_trials(
    tiny_model_dir, qa_data, tmp_path
):
    train = {"max_steps": 60, "eval_every": 5, "save_every": 5}
    path = write_study(tmp_path, tiny_model_dir, qa_data, train, pruner="none", sampler="random", trials=2, jobs=2)
    process = subprocess.Popen(
        [TUNESMITH, "tune", str(path)], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    study_dir = tmp_path / "runs" / "study"
    _wait_for_checkpoint(study_dir / "trial-0001", process)
    process.send_signal(signal.SIGTERM)  # to the tuner only: it passes the signal on to its workers
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143 and "the same command continues the study" in stderr, stderr
    assert "Traceback" not in stderr
    cut_short = [t.number for t in trials_of(tmp_path) if t.state != TrialState.COMPLETE]
    assert cut_short, "both trials finished before the signal"
    again = tune(str(path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert all(f"trial {n} was cut short" in again.stderr for n in cut_short), again.stderr
    assert len([t for t in trials_of(tmp_path) if t.state == TrialState.COMPLETE]) == 2
    for number in cut_short:  # its retry continued the trial's own folder from a checkpoint
        assert (study_dir / f"trial-{number:04d}" / "resumes.json").is_file()


def test_two_workers_share_one_sqlite_study(tiny_model_dir, qa_data, tmp_path):
    train = {"epochs": 30, "max_steps": 270, "eval_every": 90, "save_every": 90}  # trials long enough to overlap
    path = write_study(tmp_path, tiny_model_dir, qa_data, train, sampler="random", pruner="none", trials=4, jobs=2)
    result = tune(str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "database is locked" not in result.stderr
    trials = trials_of(tmp_path)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) >= 4 and all(t.state == TrialState.COMPLETE for t in trials)
    pids = {t.system_attrs["tunesmith:worker"]["pid"] for t in trials}
    assert len(pids) == len(trials)  # a process of its own for every trial
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))  # two at once
    folders = [t.user_attrs["run"] for t in trials]
    assert len(set(folders)) == len(folders)


def test_a_study_in_a_real_postgresql_database(tiny_model_dir, qa_data, tmp_path, postgres_url):
    path = write_study(tmp_path, tiny_model_dir, qa_data, sampler="random", pruner="none", trials=2)
    result = tune(str(path), "--storage", postgres_url, "--study", "pg", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    url = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    trials = optuna.load_study(study_name="pg", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    shown = tune("show", str(tmp_path / "runs" / "pg"), "--storage", postgres_url, cwd=tmp_path)
    assert shown.returncode == 0 and "complete" in shown.stdout, shown.stderr


def _one_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ({"train.lrr": {"type": "log_uniform", "low": 1e-4, "high": 1e-2}}, "Did you mean"),
        ({"train.lr": {"type": "log_uniform", "low": 1e-2, "high": 1e-4}}, "is above high"),
        ({"train.lr": {"type": "categorical", "choices": ["fast", "slow"]}}, "tune.space.train.lr = 'fast'"),
    ],
)
def test_bad_space_is_one_line_before_any_trial(tiny_model_dir, qa_data, tmp_path, space, expected):
    path = write_study(tmp_path, tiny_model_dir, qa_data, space=space)
    assert expected in _one_error(tune(str(path), cwd=tmp_path))
    assert not (tmp_path / "runs").exists()


def test_test_file_that_is_or_overlaps_validation_is_refused(tiny_model_dir, qa_data, tmp_path):
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps({"prompt": f"Name {i}.", "completion": f"It is {i}."}) + "\n" for i in range(6)))
    copy = tmp_path / "test.jsonl"
    copy.write_text(
        val.read_text().splitlines()[2] + "\n" + json.dumps({"prompt": "New?", "completion": "Yes."}) + "\n"
    )
    for test, expected in ((val, "is the val file"), (copy, "copy rows of the val file")):
        path = write_study(tmp_path, tiny_model_dir, qa_data, test=str(test))
        config = yaml.safe_load(path.read_text())
        config["data"]["val"] = str(val)
        path.write_text(yaml.safe_dump(config))
        assert expected in _one_error(tune(str(path), cwd=tmp_path))
    assert not (tmp_path / "runs").exists()


NAN_ONCE = """
import os
from pathlib import Path

from tunesmith.train import loop

_real, _steps = loop.accumulate_step, iter(range(1, 10_000))


def _nan_at_step_3_of_the_first_trial(model, micro_batches, precision=None, loss_sum_fn=None, *args, **kwargs):
    marker = Path(os.environ["NAN_MARKER"])
    if next(_steps) == 3 and not marker.exists():
        marker.touch()

        def poisoned(m, batch):
            loss, tokens = loss_sum_fn(m, batch)
            return loss + float("nan"), tokens

        return _real(model, micro_batches, precision, poisoned, *args, **kwargs)
    return _real(model, micro_batches, precision, loss_sum_fn, *args, **kwargs)


loop.accumulate_step = _nan_at_step_3_of_the_first_trial
"""


def test_a_diverged_trial_fails_alone_and_the_study_goes_on(tiny_model_dir, qa_data, tmp_path):
    """The first trial's loss is made NaN at its 3rd step (a sitecustomize in every trial process wraps the loop's
    real step): that trial fails as diverged and counts toward tune.trials, the next completes, exit 0."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(NAN_ONCE)
    env = {**ENV, "PYTHONPATH": str(hooks), "NAN_MARKER": str(tmp_path / "nan-done")}
    path = write_study(tmp_path, tiny_model_dir, qa_data, sampler="random", pruner="none", trials=2)
    command = [TUNESMITH, "tune", str(path)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "diverged" in result.stderr and "Traceback" not in result.stderr
    trials = trials_of(tmp_path)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert "NaN" in trials[0].user_attrs["diverged"]
    shown = tune("show", str(tmp_path / "runs" / "study"), cwd=tmp_path)
    assert shown.returncode == 0 and "diverged" in shown.stdout, shown.stderr


def test_a_grid_study_tries_every_point_once_across_trial_processes(tiny_model_dir, qa_data, tmp_path):
    space = {
        "train.lr": {"type": "categorical", "choices": [1e-3, 3e-3]},
        "method.r": {"type": "categorical", "choices": [2, 4]},
    }
    path = write_study(tmp_path, tiny_model_dir, qa_data, sampler="grid", pruner="none", space=space, trials=4)
    result = tune(str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    points = sorted((t.params["train.lr"], t.params["method.r"]) for t in trials_of(tmp_path))
    assert points == [(1e-3, 2), (1e-3, 4), (3e-3, 2), (3e-3, 4)]
