"""L2-SP (Li et al., 2018): λ·‖θ − θ₀‖², pulling the trained weights toward those training starts from."""

from __future__ import annotations

from torch import nn

from tunesmith.train.penalties import WeightPenalty


def build(weight: float, params: dict[str, nn.Parameter]) -> WeightPenalty:
    """θ₀ is a fp32 copy of `params` now (the pre-trained weights; for adapters, their initialisation)."""
    anchors = {name: p.detach().float().clone() for name, p in params.items()}
    return WeightPenalty("l2_sp", weight, params, anchors)
