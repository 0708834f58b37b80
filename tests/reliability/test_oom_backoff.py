"""Scenario 8, simulated out-of-memory: the forward passes' token budget halves until the step fits, for the rest
of the run, while the optimizer step (its rows and its loss normalisation) stays the same; when one row per
forward pass still does not fit, one clean error, and no endless retry."""

from __future__ import annotations

import json

import pytest
import torch
from reliability_helpers import train_tiny
from safetensors.torch import load_file

from tunesmith.errors import UserError
from tunesmith.train import loop

pytestmark = pytest.mark.integration


def _fail_above(monkeypatch, tokens: int, calls: list[int]) -> None:
    """Forward passes over more than `tokens` padded tokens raise the CPU allocator's error."""
    real = loop.accumulate_step

    def accumulate(model, micro_batches, *args, **kwargs):
        widest = max(batch["input_ids"].numel() for batch in micro_batches)
        calls.append(widest)
        if widest > tokens:
            raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 123456789 bytes.")
        return real(model, micro_batches, *args, **kwargs)

    monkeypatch.setattr(loop, "accumulate_step", accumulate)


def test_backoff_keeps_the_step(tiny_model_dir, qa_data, tmp_path, monkeypatch, capsys):
    settings = ["train.max_steps=4", "train.batch_size=8", "train.grad_accum=2", "train.max_forward_tokens=null"]
    reference = train_tiny(
        tiny_model_dir, qa_data, tmp_path, "reference", *settings[:-1], "train.max_forward_tokens=64"
    )
    calls: list[int] = []
    _fail_above(monkeypatch, 64, calls)
    run = train_tiny(tiny_model_dir, qa_data, tmp_path, "backoff", *settings, "train.max_forward_tokens=null")
    assert "warning: out of memory at step 1" in capsys.readouterr().err
    assert max(calls[-3:]) <= 64  # the budget that worked is kept: later steps fit at once
    logs = [[json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()] for r in (reference, run)]
    tokens = [[row["trained_tokens"] for row in log if "trained_tokens" in row] for log in logs]
    assert tokens[0] == tokens[1] and len(tokens[1]) == 3  # the same steps over the same rows
    want, got = (load_file(r / "best" / "trainable.safetensors") for r in (reference, run))
    assert all(torch.allclose(got[k], want[k], atol=1e-5) for k in want)


def test_nothing_fits_is_a_clean_error(tiny_model_dir, qa_data, tmp_path, monkeypatch):
    calls: list[int] = []
    _fail_above(monkeypatch, 1, calls)
    with pytest.raises(UserError, match="out of memory at step 1 even with one row per forward pass"):
        train_tiny(tiny_model_dir, qa_data, tmp_path, "never", "train.max_steps=2")
    assert len(calls) < 20  # halving reaches one row in a few tries
    assert json.loads((tmp_path / "never" / "status.json").read_text())["status"] == "failed"
