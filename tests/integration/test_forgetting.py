"""Forgetting mitigation through `tunesmith train` on a tiny model: every mitigation at once logs its terms each
step, replays exactly its share of rows, records what it used in data_report.json and keeps fisher.safetensors;
a run stopped and resumed equals an uninterrupted one; L2-SP and KL pull the weights toward the base."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.config import load_config
from tunesmith.errors import TrainingInterrupted
from tunesmith.recipes.train import run_train

pytestmark = pytest.mark.integration

SETTINGS = [
    "train.precision=fp32",
    "train.batch_size=4",
    "train.grad_accum=2",
    "train.epochs=2",  # 36 training rows, batch 4, grad_accum 2: 5 steps an epoch, the 5th of one micro-batch
    "train.max_steps=6",
    "train.eval_every=3",
    "train.save_every=2",
    "train.lr=5e-3",
    "data.max_length=64",
    "audit.reference_new_tokens=8",
]
ALL = [
    "forgetting.replay.fraction=0.2",  # 1 replay row beside every 4 task rows
    "forgetting.kl_to_base.weight=0.5",
    "forgetting.ewc.weight=1.0",
    "forgetting.ewc.batches=2",
    "forgetting.l2_sp.weight=0.1",
]


@pytest.fixture(scope="module")
def general(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("general") / "general.jsonl"
    rows = [{"text": f"The river runs past the mill number {i} and the town."} for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(model_dir: Path, data: Path, out: Path, name: str, *extra: str):
    sets = [f"model.name={model_dir}", f"data.train={data}", f"run.output_dir={out}", f"run.name={name}"]
    return load_config(None, [*sets, *SETTINGS, *extra])


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_every_mitigation_at_once(tiny_model_dir, qa_data, general, tmp_path):
    extra = [*ALL, f"forgetting.replay.data={general}", f"forgetting.ewc.data={general}"]
    run = run_train(config(tiny_model_dir, qa_data, tmp_path, "all", *extra)).path
    steps = [row for row in metrics(run) if "train_loss" in row]
    assert len(steps) == 6
    assert [row["replay_rows"] for row in steps] == [2, 2, 2, 2, 1, 2]  # exactly one per task micro-batch
    for row in steps:
        for key in ("replay_loss", "penalty_kl_to_base", "penalty_ewc", "penalty_l2_sp"):
            assert key in row and row[key] >= 0, key
    assert steps[-1]["penalty_l2_sp"] > 0 and steps[-1]["penalty_kl_to_base"] > 0
    report = json.loads((run / "data_report.json").read_text())["forgetting"]
    assert set(report) == {"replay", "kl_to_base", "ewc", "l2_sp"}
    assert report["replay"]["rows"] == 12 and report["replay"]["rows_per_batch"] == 1
    assert report["kl_to_base"]["rows"] == "replay" and report["kl_to_base"]["reference_copy_mb"] == 0
    fisher = load_file(run / "fisher.safetensors")
    assert fisher and all(torch.isfinite(t).all() for t in fisher.values())


def test_reference_replay_uses_the_base_models_answers(tiny_model_dir, qa_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    cfg = config(tiny_model_dir, qa_data, tmp_path, "ref", "forgetting.replay.data=reference", "train.max_steps=2")
    run = run_train(cfg).path
    report = json.loads((run / "data_report.json").read_text())["forgetting"]["replay"]
    assert report["rows"] == 30 and "base-model answers" in report["source"]


def _stop_at(step: int):
    def hook(state):
        if state.step == step:
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_resumed_run_equals_an_uninterrupted_one(tiny_model_dir, qa_data, general, tmp_path, method):
    extra = [*ALL, f"forgetting.replay.data={general}", f"forgetting.ewc.data={general}", f"method.name={method}"]
    straight = run_train(config(tiny_model_dir, qa_data, tmp_path / "a", "run", *extra)).path
    cfg = config(tiny_model_dir, qa_data, tmp_path / "b", "run", *extra)
    with pytest.raises(TrainingInterrupted):
        run_train(cfg, hooks=[_stop_at(3)])
    resumed = run_train(cfg, resume=True).path
    timing = {"tokens_per_s", "peak_rss_mb", "train_loss_mean", "train_val_gap"}
    a, b = ([{k: v for k, v in r.items() if k not in timing} for r in metrics(run)] for run in (straight, resumed))
    assert a == b
    last = sorted((straight / "checkpoints").glob("step-*"))[-1].name
    for file in sorted((straight / "checkpoints" / last).glob("*.safetensors")):
        other = load_file(resumed / "checkpoints" / last / file.name)
        assert all(torch.equal(t, other[k]) for k, t in load_file(file).items()), file.name


def _distance_from_base(run: Path, base_dir: Path) -> float:
    from transformers import AutoModelForCausalLM

    base = dict(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).named_parameters())
    tuned = load_file(run / "best" / "trainable.safetensors")
    return sum(float((t.float() - base[k].detach()).pow(2).sum()) for k, t in tuned.items() if k in base)


def test_l2_sp_keeps_full_fine_tuning_near_the_pre_trained_weights(tiny_model_dir, qa_data, tmp_path):
    free = run_train(config(tiny_model_dir, qa_data, tmp_path, "free", "method.name=full")).path
    held = run_train(
        config(tiny_model_dir, qa_data, tmp_path, "held", "method.name=full", "forgetting.l2_sp.weight=50")
    ).path
    assert _distance_from_base(held, tiny_model_dir) < 0.5 * _distance_from_base(free, tiny_model_dir)


def test_a_missing_replay_file_fails_the_run_with_one_line(tiny_model_dir, qa_data, tmp_path):
    from tunesmith.errors import UserError

    cfg = config(tiny_model_dir, qa_data, tmp_path, "missing", f"forgetting.replay.data={tmp_path / 'nope.jsonl'}")
    with pytest.raises(UserError) as error:
        run_train(cfg)
    assert "nope.jsonl" in str(error.value) and "\n" not in str(error.value)
    status = json.loads((tmp_path / "missing" / "status.json").read_text())
    assert status["status"] == "failed" and "nope.jsonl" in status["error"]
