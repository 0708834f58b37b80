"""Each method through the real SFT recipe on the tiny model: what should stay frozen is bit-identical, what
should train changed; the unfreezing schedule, learning-rate groups, adapter export and resume."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file
from test_train import tiny_config

from tunesmith.errors import TrainingInterrupted
from tunesmith.methods.layers import layer_groups
from tunesmith.recipes import train as recipe
from tunesmith.recipes.train import run_train
from tunesmith.train.numerics import token_loss_sum

pytestmark = pytest.mark.integration


def _config(model_dir, data, out, name, *extra):
    return tiny_config(model_dir, data, out, name, "train.max_steps=4", *extra)


@pytest.fixture
def captured(monkeypatch):
    """The model a run trains, and a copy of its parameters right after the method was applied."""
    box: dict = {}
    real_load = recipe.load_for_training

    def load_and_capture(*args):
        box["model"] = model = real_load(*args)
        box["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        box["meant_to_train"] = {n for n, p in model.named_parameters() if p.requires_grad}
        return model

    monkeypatch.setattr(recipe, "load_for_training", load_and_capture)
    return box


def _changed(box) -> set[str]:
    return {n for n, p in box["model"].named_parameters() if not torch.equal(p.detach(), box["before"][n])}


def _check_freeze_export(run, box, model_dir):
    """The exported full model holds the original weights wherever the method froze them."""
    from transformers import AutoModelForCausalLM

    original = dict(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).named_parameters())
    tuned = dict(AutoModelForCausalLM.from_pretrained(run / "model", dtype=torch.float32).named_parameters())
    for name, param in original.items():
        frozen = name.startswith(("model.embed_tokens", "model.layers.0."))
        assert torch.equal(param, tuned[name]) == frozen, name


def _check_learning_rates(run, box, model_dir):
    """Checkpointed optimizer groups: each layer's rate is the one above times the decay (0.5), mid-schedule."""
    groups = json.loads((run / "checkpoints" / "step-0000002" / "optimizer.json").read_text())["param_groups"]
    lr = {g["name"]: g["lr"] for g in groups}
    assert lr["head/no_decay"] > 0
    expected = {"layers.1": 0.5, "layers.1/no_decay": 0.5, "layers.0": 0.25, "embeddings": 0.125}
    assert {k: lr[k] / lr["head/no_decay"] for k in expected} == pytest.approx(expected)


def _check_adapter_reloads(run, box, model_dir):
    """The exported adapter, loaded as `tunesmith chat`/eval load it, gives the trained model's loss."""
    from tunesmith.methods.loading import load_run

    loaded = load_run(run)
    texts = ["Say the number 3. The number is 3.", "Say the number 5."]
    batch = dict(loaded.tokenizer(texts, padding=True, return_tensors="pt"))
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        reloaded, _ = token_loss_sum(loaded.model, batch)
        trained, _ = token_loss_sum(box["model"].eval(), batch)
    assert torch.allclose(reloaded, trained, atol=1e-4)


METHOD_CASES = {
    "lora-dora-rslora": (["method.name=lora", "method.use_dora=true", "method.use_rslora=true"], None),
    "freeze": (["method.name=freeze", "method.freeze_layers=1"], _check_freeze_export),
    "layerwise_lr_decay": (["method.name=layerwise_lr_decay", "method.decay=0.5"], _check_learning_rates),
    "prompt_tuning": (
        ["method.name=prompt_tuning", "method.num_virtual_tokens=4", "train.lr=5e-2"],
        _check_adapter_reloads,
    ),
    "prefix_tuning": (
        ["method.name=prefix_tuning", "method.num_virtual_tokens=4", "train.lr=5e-2"],
        _check_adapter_reloads,
    ),
    "qlora": (["method.name=qlora", "method.r=4"], None),
}


@pytest.mark.parametrize("case", list(METHOD_CASES))
def test_frozen_stays_bit_identical_and_trainable_changes(tiny_model_dir, qa_data, tmp_path, captured, case):
    if case == "qlora":
        pytest.importorskip("bitsandbytes")
    sets, check = METHOD_CASES[case]
    run = run_train(_config(tiny_model_dir, qa_data, tmp_path, case, *sets)).path
    assert _changed(captured) == captured["meant_to_train"]  # no frozen parameter moved, every trainable one did
    report = json.loads((run / "summary.json").read_text())["parameters"]
    assert report["trainable"] == sum(captured["before"][n].numel() for n in captured["meant_to_train"])
    if check is not None:
        check(run, captured, tiny_model_dir)


def test_gradual_unfreeze_opens_groups_on_schedule(tiny_model_dir, qa_data, tmp_path, captured):
    seen = []

    def record(state):  # after each step: which groups trained in it
        groups = layer_groups(captured["model"])
        seen.append([g for g, named in groups.items() if all(p.requires_grad for _, p in named)])

    cfg = _config(tiny_model_dir, qa_data, tmp_path, "gu", "method.name=gradual_unfreeze", "method.every_steps=2")
    run_train(cfg, hooks=[record])
    top, two = ["layers.1", "head"], ["layers.0", "layers.1", "head"]
    assert seen == [top, top, two, two]
    changed = _changed(captured)
    assert not any(n.startswith("model.embed_tokens") for n in changed)  # its turn (step 5) never came
    assert {n.split(".")[2] for n in changed if ".layers." in n} == {"0", "1"}


def _kill_at(step):
    def hook(state):
        if state.step == step:
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


def test_gradual_unfreeze_resume_is_bit_identical(tiny_model_dir, qa_data, tmp_path):
    extra = ["method.name=gradual_unfreeze", "method.every_steps=3", "method.lr_decay=0.7", "train.save_every=2"]
    straight = run_train(tiny_config(tiny_model_dir, qa_data, tmp_path, "straight", *extra)).path
    cfg = tiny_config(tiny_model_dir, qa_data, tmp_path, "resumed", *extra)
    with pytest.raises(TrainingInterrupted):
        run_train(cfg, hooks=[_kill_at(4)])  # checkpoint at 4; layer 0 opened at 3, embeddings open at 6
    resumed = run_train(cfg, resume=True).path

    def final(run):
        return load_file(sorted((run / "checkpoints").glob("step-*"))[-1] / "trainable.safetensors")

    a, b = final(straight), final(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_regularization_acts_on_training_only(tiny_model_dir, qa_data, tmp_path, captured):
    knobs = ["regularization.dropout=0.1", "regularization.label_smoothing=0.2", "regularization.neftune_alpha=5"]

    def first_step(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        summary = json.loads((run / "summary.json").read_text())
        return next(r["train_loss"] for r in rows if "train_loss" in r), summary["base_val_loss"]

    plain = first_step(run_train(tiny_config(tiny_model_dir, qa_data, tmp_path, "plain", "train.max_steps=1")).path)
    regularized = first_step(
        run_train(tiny_config(tiny_model_dir, qa_data, tmp_path, "reg", "train.max_steps=1", *knobs)).path
    )
    assert regularized[1] == plain[1]  # evaluation sees no noise, no smoothing, no dropout
    assert regularized[0] != plain[0]
    model = captured["model"]
    assert model.config.attention_dropout == 0.1
    hooks = model.get_input_embeddings()._forward_hooks.values()
    assert not [h for h in hooks if "neftune" in h.__qualname__]  # removed once training ended
