"""Elastic weight consolidation (Kirkpatrick et al., 2017): λ·Σ F·(θ − θ*)², F the diagonal Fisher.

F is estimated before training on rows of what the model should keep (an earlier task, general text, or the
base model's own answers) as the mean squared gradient of each batch's mean token loss (a batch-level empirical
Fisher), and saved in the run as `fisher.safetensors`: a resumed run reads it instead of estimating again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from tunesmith.config.forgetting import EWCConfig
from tunesmith.data.batching import collate
from tunesmith.data.tokenize import Encoded
from tunesmith.train.checkpoint import save_weights_atomically
from tunesmith.train.numerics import token_loss_sum
from tunesmith.train.penalties import WeightPenalty, starting_point
from tunesmith.train.precision import autocast

FISHER_FILE = "fisher.safetensors"


def fisher_diagonal(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    rows: Sequence[Encoded],
    pad_id: int,
    cfg: EWCConfig,
    bf16: bool = False,
) -> dict[str, torch.Tensor]:
    """Mean over `cfg.batches` batches of the squared gradient of the batch's mean token loss, per weight."""
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    was_training, was_trainable = model.training, {name: p.requires_grad for name, p in params.items()}
    model.eval()  # no dropout: the Fisher of the model itself
    for param in params.values():
        param.requires_grad_(True)  # weights scheduled to unfreeze later are anchored too
    try:
        for b in range(cfg.batches):
            start = (b * cfg.batch_size) % len(rows)
            batch = collate([rows[(start + i) % len(rows)] for i in range(cfg.batch_size)], pad_id)
            model.zero_grad(set_to_none=True)
            with autocast(bf16):
                loss_sum, tokens = token_loss_sum(model, batch)
            (loss_sum / max(tokens, 1)).backward()
            for name, param in params.items():
                if param.grad is not None:
                    fisher[name] += param.grad.detach().float() ** 2 / cfg.batches
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        for name, param in params.items():
            param.requires_grad_(was_trainable[name])
    if cfg.normalize:
        mean = sum(float(f.sum()) for f in fisher.values()) / max(sum(f.numel() for f in fisher.values()), 1)
        fisher = {name: f / mean for name, f in fisher.items()} if mean > 0 else fisher
    return fisher


def load_or_estimate(
    run_path: Path,
    model: nn.Module,
    params: dict[str, nn.Parameter],
    rows: Sequence[Encoded],
    pad_id: int,
    cfg: EWCConfig,
    bf16: bool = False,
) -> tuple[dict[str, torch.Tensor], bool]:
    """(the Fisher, whether it was read from the run) - a resumed run reads the one estimated at its start."""
    path = run_path / FISHER_FILE
    if path.is_file():
        stored = load_file(path)
        if set(stored) == set(params):
            return stored, True
    fisher = fisher_diagonal(model, params, rows, pad_id, cfg, bf16)
    save_weights_atomically(fisher, path)
    return fisher, False


def build(
    cfg: EWCConfig,
    params: dict[str, nn.Parameter],
    fisher: dict[str, torch.Tensor],
    anchors: dict[str, torch.Tensor] | None = None,
) -> WeightPenalty:
    """θ* is `anchors`, by default a fp32 copy of `params` now: the weights the Fisher was estimated at."""
    return WeightPenalty("ewc", cfg.weight, params, anchors if anchors is not None else starting_point(params), fisher)
