"""The speed path (logits only at supervised positions, length-grouped batches) trains like the plain path."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import tunesmith.train.numerics as numerics
from tunesmith.config import load_config
from tunesmith.recipes.train import run_train

pytestmark = pytest.mark.integration


def _run(model_dir, data, out, name):
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
            "data.max_length=64",
            "method.dropout=0",
        ],
    )
    run = run_train(cfg)
    return json.loads((run / "summary.json").read_text()), load_file(run / "best" / "trainable.safetensors")


def test_selective_logits_path_matches_full_forward(tiny_model_dir, qa_data, tmp_path, monkeypatch):
    fast_summary, fast_weights = _run(tiny_model_dir, qa_data, tmp_path, "fast")
    monkeypatch.setattr(numerics, "_decoder_and_head", lambda model: None)  # force model(...).logits everywhere
    plain_summary, plain_weights = _run(tiny_model_dir, qa_data, tmp_path, "plain")
    assert abs(fast_summary["tuned_val_loss"] - plain_summary["tuned_val_loss"]) < 1e-4
    assert abs(fast_summary["base_val_loss"] - plain_summary["base_val_loss"]) < 1e-5
    assert all(torch.allclose(fast_weights[k], plain_weights[k], atol=1e-4) for k in fast_weights)
