"""The sentence vector an encoder's classification head reads: the model's own pooler, or a masked mean.

BERT-style sequence classifiers feed the head `pooler(hidden[:, 0])` (a dense layer + tanh on [CLS]).
Sentence-transformers checkpoints such as all-MiniLM-L6-v2 were trained to be read by mean pooling instead,
and their pooler was never trained for it. `mean` swaps the pooler module for a masked mean of the last hidden
states; the mask comes from the encoder's own forward call. Decoder classifiers (Llama, SmolLM2) have no pooler:
they read the last non-padding token and are left alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

MEAN_POOLING = "mean"


class MeanPooler(nn.Module):
    """Masked mean of the hidden states over the real (non-padding) tokens; no weights."""

    def __init__(self) -> None:
        super().__init__()
        self.mask: torch.Tensor | None = None  # set from the encoder's attention_mask before each forward

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        mask = self.mask if self.mask is not None else torch.ones(hidden.shape[:2], device=hidden.device)
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def _encoder_with_pooler(model: nn.Module) -> nn.Module | None:
    """The encoder body that owns a `pooler` (e.g. `model.bert`), or None for models without one."""
    for module in model.modules():
        if isinstance(getattr(module, "pooler", None), nn.Module) and module is not model:
            return module
    return None


def set_pooling(model: nn.Module, mode: str) -> str:
    """Make the head read a masked mean (`mean`/`auto`) or the model's own pooler (`cls`); returns what is used."""
    encoder = _encoder_with_pooler(model)
    if encoder is None or mode == "cls":
        return "last_token" if encoder is None else "cls"
    pooler = MeanPooler()
    encoder.pooler = pooler

    def keep_mask(_module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        pooler.mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

    encoder.register_forward_pre_hook(keep_mask, with_kwargs=True)
    return MEAN_POOLING
