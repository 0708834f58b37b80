"""L2-SP (Li et al., 2018): λ·‖θ − θ₀‖², pulling the trained weights toward those training starts from."""

from __future__ import annotations

import torch
from torch import nn

from tunesmith.train.penalties import WeightPenalty, starting_point


def build(
    weight: float, params: dict[str, nn.Parameter], anchors: dict[str, torch.Tensor] | None = None
) -> WeightPenalty:
    """θ₀ is `anchors`, by default a fp32 copy of `params` now (the pre-trained weights; for adapters, their
    initialisation)."""
    return WeightPenalty("l2_sp", weight, params, anchors if anchors is not None else starting_point(params))
