"""The speed path (logits only at supervised positions, length-grouped batches, packed micro-batches) trains like
the plain path: same validation loss, same weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import tunesmith.compat.attention as attention
import tunesmith.compat.fused as fused
import tunesmith.train.numerics as numerics
from tunesmith.config import load_config
from tunesmith.data.batching import split_by_tokens
from tunesmith.recipes.train import run_train
from tunesmith.train import loop
from tunesmith.train.loop import LoopSetup

pytestmark = pytest.mark.integration


def _run(model_dir, data, out, name, *extra):
    cfg = load_config(
        None,
        [
            f"model.name={model_dir}",
            f"data.train={data}",
            f"run.output_dir={out}",
            f"run.name={name}",
            "train.max_steps=6",
            "train.batch_size=4",
            "train.eval_every=3",
            "train.precision=fp32",
            "train.lr=5e-3",
            "data.max_length=96",
            *(["method.dropout=0"] if "method.name=full" not in extra else []),
            *extra,
        ],
    )
    run = run_train(cfg).path
    return json.loads((run / "summary.json").read_text()), load_file(run / "best" / "trainable.safetensors")


def test_selective_logits_path_matches_full_forward(tiny_model_dir, qa_data, tmp_path, monkeypatch):
    fast_summary, fast_weights = _run(tiny_model_dir, qa_data, tmp_path, "fast")
    monkeypatch.setattr(numerics, "_decoder_and_head", lambda model: None)  # force model(...).logits everywhere
    plain_summary, plain_weights = _run(tiny_model_dir, qa_data, tmp_path, "plain", "train.packing=off")
    assert abs(fast_summary["tuned_val_loss"] - plain_summary["tuned_val_loss"]) < 1e-4
    assert abs(fast_summary["base_val_loss"] - plain_summary["base_val_loss"]) < 1e-5
    assert all(torch.allclose(fast_weights[k], plain_weights[k], atol=1e-4) for k in fast_weights)


@pytest.fixture
def uneven_data(tmp_path):
    """Mostly short answers and a few long ones: length-grouped batches still mix them, so rows get packed."""
    counts = [20] * 6 + [1, 2] * 13  # ~80 and ~30 tokens: two short examples fit next to a long one
    rows = [
        {"prompt": f"Count to {n}, row {i}.", "completion": " ".join(str(k) for k in range(1, n + 1))}
        for i, n in enumerate(counts)
    ]
    path = tmp_path / "uneven.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("method", ["lora", "full"])
def test_packed_training_matches_padded(tiny_model_dir, uneven_data, tmp_path, monkeypatch, method):
    rows_saved: list[int] = []
    train_step = loop._train_step

    def spy(setup: LoopSetup, window, optimizer, step, budget):
        for idx in window:  # how many rows packing saved in this micro-batch (0 when it is off)
            batch = setup.objective.pack([setup.train_data[i] for i in idx], setup.pad_id)
            rows_saved.append(len(idx) - batch["input_ids"].shape[0] if setup.packing else 0)
        return train_step(setup, window, optimizer, step, budget)

    monkeypatch.setattr(loop, "_train_step", spy)
    packed, packed_weights = _run(
        tiny_model_dir, uneven_data, tmp_path, f"packed-{method}", f"method.name={method}", "train.packing=on"
    )
    assert sum(rows_saved) > 0  # packing really put several examples in one row
    rows_saved.clear()
    padded, padded_weights = _run(tiny_model_dir, uneven_data, tmp_path, f"padded-{method}", f"method.name={method}")
    assert rows_saved and sum(rows_saved) == 0  # off by default
    assert abs(packed["base_val_loss"] - padded["base_val_loss"]) < 1e-6  # validation is padded either way
    assert abs(packed["tuned_val_loss"] - padded["tuned_val_loss"]) < 1e-4
    assert packed_weights.keys() == padded_weights.keys()
    assert all(torch.allclose(packed_weights[k], padded_weights[k], atol=1e-4) for k in packed_weights)


def test_split_forward_passes_train_like_whole_micro_batches(tiny_model_dir, uneven_data, tmp_path, monkeypatch):
    passes: list[int] = []
    train_step = loop._train_step

    def spy(setup: LoopSetup, window, optimizer, step, budget):
        passes.append(sum(len(split_by_tokens(idx, setup.lengths, budget)) for idx in window))
        return train_step(setup, window, optimizer, step, budget)

    monkeypatch.setattr(loop, "_train_step", spy)
    split, split_weights = _run(tiny_model_dir, uneven_data, tmp_path, "split", "train.max_forward_tokens=100")
    assert sum(passes) > len(passes)  # micro-batches really were split
    whole, whole_weights = _run(tiny_model_dir, uneven_data, tmp_path, "whole", "train.max_forward_tokens=null")
    assert abs(split["tuned_val_loss"] - whole["tuned_val_loss"]) < 1e-5
    # fp32 rounding differs with the padded width; Adam magnifies it on near-zero gradients (measured 1.0e-5)
    assert all(torch.allclose(split_weights[k], whole_weights[k], atol=1e-4) for k in split_weights)


def test_matmul_attention_trains_like_sdpa(tiny_model_dir, uneven_data, tmp_path, monkeypatch):
    used = []
    fast_path = attention.matmul_causal_attention
    monkeypatch.setattr(attention, "matmul_causal_attention", lambda *a: used.append(1) or fast_path(*a))
    fast, fast_weights = _run(tiny_model_dir, uneven_data, tmp_path, "matmul", "train.attention=auto")
    assert used  # the training passes took the matmul path
    plain, plain_weights = _run(tiny_model_dir, uneven_data, tmp_path, "sdpa", "train.attention=model")
    assert abs(fast["base_val_loss"] - plain["base_val_loss"]) < 1e-6  # evaluation keeps SDPA either way
    assert abs(fast["tuned_val_loss"] - plain["tuned_val_loss"]) < 1e-5
    assert all(torch.allclose(fast_weights[k], plain_weights[k], atol=1e-5) for k in fast_weights)


def test_fused_ops_train_like_the_model_code(tiny_model_dir, uneven_data, tmp_path, monkeypatch):
    monkeypatch.setattr(fused, "_MIN_PARAMETERS", 0)  # the tiny model would skip them
    fast, fast_weights = _run(tiny_model_dir, uneven_data, tmp_path, "fused", "train.fused_ops=auto")
    assert fast["fused_ops"]["used"] == ["rmsnorm", "rotary", "gated_mlp", "lora_addmm"], fast["fused_ops"]
    plain, plain_weights = _run(tiny_model_dir, uneven_data, tmp_path, "model", "train.fused_ops=model")
    assert plain["fused_ops"]["used"] == []
    assert abs(fast["base_val_loss"] - plain["base_val_loss"]) < 1e-6  # evaluation runs the model's code
    assert abs(fast["tuned_val_loss"] - plain["tuned_val_loss"]) < 1e-5
    assert all(torch.allclose(fast_weights[k], plain_weights[k], atol=1e-4) for k in fast_weights)
