"""`tunesmith sequence` on a tiny model: the retention matrix is filled after every stage, a killed sequence
resumes to the same result, per-task adapters keep earlier scores and merge, joint mode trains once, and a bad
sequence config stops with one line before any training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tunesmith.config.sequence import load_sequence
from tunesmith.errors import TrainingInterrupted, UserError
from tunesmith.recipes.sequence import read_state, run_sequence

pytestmark = pytest.mark.integration
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))

STAGE = {
    "train": {"precision": "fp32", "batch_size": 4, "max_steps": 3, "eval_every": 2, "save_every": 1, "lr": 5e-3},
    "data": {"max_length": 64},
    "audit": {"reference_new_tokens": 8},
    "eval": {"max_new_tokens": 8, "max_examples": 8},
}


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def task_files(tmp_path_factory) -> dict[str, dict[str, str]]:
    root = tmp_path_factory.mktemp("tasks")
    colors = [
        {"text": f"the {w} sky number {i}", "label": "blue" if w == "clear" else "gray"}
        for i in range(16)
        for w in ("clear", "cloudy")
    ]
    numbers = [{"prompt": f"Say the number {i % 7}.", "completion": f"The number is {i % 7}."} for i in range(30)]
    return {
        "colors": {"train": _write(root / "c.jsonl", colors[:24]), "test": _write(root / "ct.jsonl", colors[24:])},
        "numbers": {"train": _write(root / "n.jsonl", numbers[:22]), "test": _write(root / "nt.jsonl", numbers[22:])},
    }


def sequence_file(tmp_path: Path, model: Path, files, **extra) -> Path:
    tasks = [
        {"name": "colors", **files["colors"], "metric": "accuracy", "config": {"data": {"format": "text_label"}}},
        {"name": "numbers", **files["numbers"], "metric": "exact_match"},
    ]
    stage = {**STAGE, "model": {"name": str(model)}, **extra.pop("stage", {})}
    body = {"run": {"name": "seq", "output_dir": str(tmp_path / "runs")}, "stage": stage, "tasks": tasks, **extra}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "sequence.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def _scores(state: dict) -> list[list[float]]:
    return [[s["score"] for s in stage["scores"]] for stage in state["stages"]]


def test_a_sequence_fills_the_matrix_and_chains_the_stages(tiny_model_dir, task_files, tmp_path):
    earlier = {"replay": {"data": "earlier"}, "ewc": {"weight": 1.0, "data": "earlier", "batches": 1}}
    path = sequence_file(tmp_path, tiny_model_dir, task_files, stage={"forgetting": earlier})
    folder = run_sequence(load_sequence(path), str(path))
    state = read_state(folder)
    assert state["order"]["tasks"] == ["colors", "numbers"]
    assert len(state["base"]) == 2 and len(_scores(state)) == 2 and all(len(row) == 2 for row in _scores(state))
    assert [s["scoring"] for s in state["stages"][0]["scores"]] == ["label_likelihood", "generation"]
    first, second = state["stages"]
    assert first["base"] == str(tiny_model_dir) and second["base"] == first["next_base"]
    assert Path(first["next_base"]).name == "merged" and (Path(first["next_base"]) / "model.safetensors").is_file()
    assert {"average", "bwt", "fwt", "forgetting"} <= set(state["summary"])
    assert second["general"]["reference_perplexity"]["tuned"] > 0 and second["general"]["kl_base_tuned"] >= 0
    replay = json.loads((Path(second["run"]) / "data_report.json").read_text())["forgetting"]["replay"]
    assert "earlier-2-numbers.jsonl" in replay["source"] and replay["rows"] > 0  # the colors rows, replayed
    assert not (Path(first["run"]) / "data_report.json").read_text().count('"replay"')  # nothing earlier yet
    assert (Path(second["run"]) / "fisher.safetensors").is_file()  # EWC on the colors rows, at stage 1's weights
    assert not (Path(first["run"]) / "fisher.safetensors").exists()
    assert (folder / "retention.png").is_file() and (folder / "retention_curves.png").is_file()
    from tunesmith.evaluate.report.sequence_page import write_sequence_page

    assert "Retention matrix" in write_sequence_page(folder).read_text()


def test_reference_replay_keeps_the_original_base_answers_in_every_stage(tiny_model_dir, task_files, tmp_path):
    replay = {"replay": {"data": "reference", "fraction": 0.25}}
    path = sequence_file(tmp_path, tiny_model_dir, task_files, stage={"forgetting": replay})
    state = read_state(run_sequence(load_sequence(path), str(path)))
    first, second = state["stages"]
    assert second["base"] == first["next_base"] != str(tiny_model_dir)
    for stage in state["stages"]:  # stage 2 starts from stage 1's weights, yet replays the original base's answers
        source = json.loads((Path(stage["run"]) / "data_report.json").read_text())["forgetting"]["replay"]["source"]
        assert f"({tiny_model_dir})" in source and source.count("cached") == 1


def test_a_resumed_sequence_equals_an_uninterrupted_one(tiny_model_dir, task_files, tmp_path):
    straight = read_state(
        run_sequence(load_sequence(p := sequence_file(tmp_path / "a", tiny_model_dir, task_files)), str(p))
    )
    path = sequence_file(tmp_path / "b", tiny_model_dir, task_files)
    seq = load_sequence(path)
    calls = {"n": 0}

    def stop_in_stage_two(state):  # the hook sees both stages' steps; stop at stage 2's second step
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted):
        run_sequence(seq, str(path), hooks=[stop_in_stage_two])
    interrupted = read_state(tmp_path / "b" / "runs" / "seq")
    assert len(interrupted["stages"]) == 1  # stage 1 scored, stage 2 cut short
    resumed = read_state(run_sequence(seq, str(path), resume=True))
    assert _scores(resumed) == _scores(straight)
    assert resumed["summary"] == straight["summary"] | {"train_seconds": resumed["summary"]["train_seconds"]}


def test_per_task_adapters_keep_earlier_scores_and_merge(tiny_model_dir, task_files, tmp_path):
    path = sequence_file(tmp_path, tiny_model_dir, task_files, adapters="per_task", merge={"combination": "ties"})
    folder = run_sequence(load_sequence(path), str(path))
    state = read_state(folder)
    first, second = _scores(state)
    assert second[0] == first[0] and state["stages"][1]["scores"][0]["from_stage"] == 1
    assert all(stage["base"] == str(tiny_model_dir) for stage in state["stages"])
    assert len(state["merged"]["scores"]) == 2 and "merged_average" in state["summary"]
    assert (Path(state["merged"]["adapter"]) / "adapter_model.safetensors").is_file()
    predict = [TUNESMITH, "predict", str(folder), "--data", task_files["numbers"]["test"], "--out", "p.jsonl"]
    for adapter in ("numbers", "merged"):
        done = subprocess.run([*predict, "--adapter", adapter], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 8
    wrong = subprocess.run([*predict, "--adapter", "number"], cwd=tmp_path, capture_output=True, text=True)
    lines = [line for line in wrong.stderr.splitlines() if line.strip()]
    assert wrong.returncode != 0 and len(lines) == 1 and 'Did you mean "numbers"' in lines[0], wrong.stderr


def test_joint_mode_trains_once_on_every_task(tiny_model_dir, task_files, tmp_path):
    path = sequence_file(tmp_path, tiny_model_dir, task_files, mode="joint", order="easy_first")
    state = read_state(run_sequence(load_sequence(path), str(path)))
    losses = state["order"]["base_loss"]
    assert state["order"]["tasks"] == sorted(losses, key=losses.get) and set(losses) == {"colors", "numbers"}
    assert [stage["name"] for stage in state["stages"]] == ["1-joint"]
    assert sorted(state["stages"][0]["tasks"]) == ["colors", "numbers"]
    assert set(state["summary"]) == {"average", "train_seconds"}
    joint = (tmp_path / "runs" / "seq" / "data" / "joint-train.jsonl").read_text().splitlines()
    assert len(joint) > 24  # rows of both tasks, as chat turns
    assert all("messages" in json.loads(line) for line in joint)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda body: body["tasks"][1].update(test="missing.jsonl"), "tasks[numbers].test: file not found"),
        (lambda body: body["tasks"][0].update(task="ner"), "cannot be a sequence stage"),
        (lambda body: body["tasks"][0].update(metrc="accuracy"), 'Did you mean "metric"'),
        (lambda body: body["stage"]["train"].update(lrr=1), "tasks[colors]: unknown key 'train.lrr'"),
        (lambda body: body.update(order=["colors"]), "order must list every task once"),
        (lambda body: body.update(merge={"combination": "ties"}), "merge combines per-task adapters"),
    ],
)
def test_a_bad_sequence_config_stops_with_one_line(tiny_model_dir, task_files, tmp_path, change, expected):
    path = sequence_file(tmp_path, tiny_model_dir, task_files)
    body = yaml.safe_load(path.read_text())
    change(body)
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(UserError) as error:
        load_sequence(path)
    assert expected in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("extra", "expected"), [({"order": "hardest_first"}, "'order'"), ({}, "must be a plain folder name")]
)
def test_the_sequence_command_reports_a_bad_config_in_one_line(tiny_model_dir, task_files, tmp_path, extra, expected):
    path = sequence_file(tmp_path, tiny_model_dir, task_files, **extra)
    sets = [] if extra else ["--set", "run.name=../escaped"]
    result = subprocess.run([TUNESMITH, "sequence", str(path), *sets], capture_output=True, text=True, cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert expected in lines[0] and not (tmp_path / "runs").exists() and not (tmp_path / "escaped").exists()
