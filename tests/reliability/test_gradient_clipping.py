"""Scenario 7, gradient clipping: the norm after clipping is at most train.max_grad_norm, and metrics.jsonl
logs the norm before clipping (the one that tells a user the gradients exploded)."""

from __future__ import annotations

import json

import pytest
import torch
from reliability_helpers import train_tiny

pytestmark = pytest.mark.integration
MAX_NORM = 0.05  # far below the tiny model's gradient norms at lr 5e-3: every step clips


def test_post_clip_norm_is_bounded_and_pre_clip_norm_logged(tiny_model_dir, qa_data, tmp_path, monkeypatch):
    seen: list[tuple[float, float]] = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(params, max_norm, *args, **kwargs):
        params = list(params)
        before = clip(params, max_norm, *args, **kwargs)
        after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        seen.append((float(before), float(after)))
        return before

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    run = train_tiny(tiny_model_dir, qa_data, tmp_path, "clip", "train.max_steps=5", f"train.max_grad_norm={MAX_NORM}")
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    norms = [row["grad_norm"] for row in logged if "grad_norm" in row]
    assert len(seen) == 5 and all(before > MAX_NORM for before, _ in seen)  # clipping really happened
    assert all(after <= MAX_NORM * (1 + 1e-4) for _, after in seen)
    assert norms == pytest.approx([before for before, _ in seen])


def test_no_clipping_when_disabled(tiny_model_dir, qa_data, tmp_path, monkeypatch):
    limits = []
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(
        torch.nn.utils,
        "clip_grad_norm_",
        lambda params, max_norm, **kw: limits.append(max_norm) or clip(params, max_norm),
    )
    train_tiny(tiny_model_dir, qa_data, tmp_path, "noclip", "train.max_steps=2", "train.max_grad_norm=null")
    assert limits == [float("inf")] * 2
