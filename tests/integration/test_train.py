"""Drive the real SFT recipe on a tiny random model: outputs, what trains, resume, NaN guard."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.config import load_config
from tunesmith.errors import NonFiniteLossError, TrainingInterrupted
from tunesmith.recipes.summary import RunSummary
from tunesmith.recipes.train import run_train

pytestmark = pytest.mark.integration


def tiny_config(model_dir: Path, data: Path, out: Path, name: str, *extra: str):
    sets = [
        f"model.name={model_dir}",
        f"data.train={data}",
        f"run.output_dir={out}",
        f"run.name={name}",
        "train.max_steps=8",
        "train.batch_size=4",
        "train.eval_every=4",
        "train.save_every=2",
        "train.precision=fp32",
        "train.lr=5e-3",
        "data.max_length=64",
        "eval.batch_size=8",
        *extra,
    ]
    return load_config(None, sets)


def test_lora_run_folder_and_frozen_base(tiny_model_dir, qa_data, tmp_path):
    run = run_train(tiny_config(tiny_model_dir, qa_data, tmp_path, "lora")).path
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "loss.png",
        "summary.json",
        "data_report.json",
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "status.json",
    ):
        assert (run / name).exists(), name
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 8 and summary["tuned_val_loss"] < summary["base_val_loss"]
    assert 0 <= summary["train_padding_fraction"] < 0.5  # length-grouped batches: little padding
    assert RunSummary.read(run).to_json() == summary  # the typed summary reads back what was written
    assert not [p for p in run.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".pickle"}]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "train_loss", "lr", "tokens_per_s"} <= set(rows[1]) and any("val_loss" in r for r in rows)

    # Plain transformers + peft load the adapter; the base weights inside are bit-identical to the original.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tuned = PeftModel.from_pretrained(base, run / "adapter")
    tuned_params = dict(tuned.get_base_model().named_parameters())
    for name, param in original.named_parameters():
        module, leaf = name.rsplit(".", 1)
        key = name if name in tuned_params else f"{module}.base_layer.{leaf}"
        assert torch.equal(param, tuned_params[key]), f"frozen {name} changed"
    lora_b = [p for n, p in tuned.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero, so it trained


def test_full_finetune_changes_every_weight(tiny_model_dir, qa_data, tmp_path):
    from transformers import AutoModelForCausalLM

    run = run_train(tiny_config(tiny_model_dir, qa_data, tmp_path, "full", "method.name=full")).path
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tuned = AutoModelForCausalLM.from_pretrained(run / "model", dtype=torch.float32)
    tuned_params = dict(tuned.named_parameters())
    changed = [n for n, p in original.named_parameters() if not torch.equal(p, tuned_params[n])]
    assert len(changed) == len(list(original.parameters()))


def _kill_at(step: int):
    def hook(state):
        if state.step == step:
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


@pytest.mark.parametrize("method", ["lora", "full"])
def test_resume_is_bit_identical(tiny_model_dir, qa_data, tmp_path, method):
    straight = run_train(
        tiny_config(
            tiny_model_dir, qa_data, tmp_path, f"straight-{method}", f"method.name={method}", "train.save_every=3"
        )
    ).path
    cfg = tiny_config(
        tiny_model_dir, qa_data, tmp_path, f"resumed-{method}", f"method.name={method}", "train.save_every=3"
    )
    with pytest.raises(TrainingInterrupted) as stop:
        run_train(cfg, hooks=[_kill_at(5)])
    assert stop.value.step == 5 and stop.value.exit_code == 128 + signal.SIGTERM
    assert json.loads((tmp_path / f"resumed-{method}" / "status.json").read_text())["status"] == "interrupted"
    resumed = run_train(cfg, resume=True).path

    def final_weights(run):
        return load_file(sorted((run / "checkpoints").glob("step-*"))[-1] / "trainable.safetensors")

    a, b = final_weights(straight), final_weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)

    def losses(run):
        return [
            r["train_loss"]
            for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "train_loss" in r
        ]

    assert losses(straight) == losses(resumed)
    assert not list((tmp_path / f"resumed-{method}" / "checkpoints").glob(".staging-*"))


def test_nan_loss_stops_with_the_step(tiny_model_dir, qa_data, tmp_path, monkeypatch):
    def poison(state):
        if state.step == 2:
            model_param = next(p for p in poison.model.parameters() if p.requires_grad)
            with torch.no_grad():
                model_param.fill_(float("nan"))

    cfg = tiny_config(tiny_model_dir, qa_data, tmp_path, "nan", "method.name=full")
    import tunesmith.recipes.train as recipe

    real_load = recipe.load_for_training

    def load_and_capture(*args):
        poison.model = real_load(*args)
        return poison.model

    monkeypatch.setattr(recipe, "load_for_training", load_and_capture)
    with pytest.raises(NonFiniteLossError, match="step 3"):
        run_train(cfg, hooks=[poison])
    run = tmp_path / "nan"
    assert json.loads((run / "status.json").read_text())["status"] == "failed"
    assert not (run / "summary.json").exists()
    for line in (run / "metrics.jsonl").read_text().splitlines():
        assert all(not (isinstance(v, float) and not math.isfinite(v)) for v in json.loads(line).values())
        assert "NaN" not in line and "Infinity" not in line


@pytest.mark.parametrize(
    ("fmt", "row"),
    [
        (
            "chat",
            lambda i: {
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": f"count {i}"},
                    {"role": "assistant", "content": f"{i} {i + 1}"},
                ]
            },
        ),
        ("text", lambda i: {"text": f"The quick brown fox number {i} jumps over the lazy dog. " * 3}),
        ("alpaca", lambda i: {"instruction": "Repeat", "input": f"word {i}", "output": f"word {i}"}),
        ("text_label", lambda i: {"text": f"sample {i}", "label": i % 2}),
    ],
)
def test_every_format_trains_end_to_end(tiny_model_dir, tmp_path, fmt, row):
    data = tmp_path / f"{fmt}.jsonl"
    data.write_text("".join(json.dumps(row(i)) + "\n" for i in range(20)))
    run = run_train(tiny_config(tiny_model_dir, data, tmp_path, fmt, "train.max_steps=2")).path
    report = json.loads((run / "data_report.json").read_text())
    assert report["format"] == fmt and report["train"]["trainable_tokens"] > 0
    assert json.loads((run / "summary.json").read_text())["steps"] == 2
