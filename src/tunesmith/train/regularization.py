"""Regularisation knobs that act on the model: dropout override and NEFTune embedding noise.

Weight decay lives in the optimizer (`train.weight_decay`) and label smoothing in the shared loss
(`train.numerics.token_loss_sum`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from tunesmith.train.numerics import token_loss_sum
from tunesmith.train.objective import CAUSAL_LM, Objective

# Config fields that hold a dropout rate, across Llama/Mistral/Qwen, BERT and GPT-2 style configs.
DROPOUT_FIELDS = (
    "attention_dropout",
    "hidden_dropout",
    "attention_probs_dropout_prob",
    "hidden_dropout_prob",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "activation_dropout",
)


def set_dropout(model: nn.Module, p: float) -> list[str]:
    """Set every dropout of the model to `p`; returns the config fields changed (empty: the model has none).

    Modules copy their rate from the config when built, so the config alone is not enough: nn.Dropout modules
    and attention modules' `attention_dropout` are set too. Call it before adding adapters, whose own dropout
    (e.g. LoRA's) is a separate setting.
    """
    config = getattr(model, "config", None)
    fields = [f for f in DROPOUT_FIELDS if isinstance(getattr(config, f, None), int | float)]
    for name in fields:
        setattr(config, name, p)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
        elif isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = p
    return fields


def add_neftune(model: nn.Module, alpha: float) -> RemovableHandle:
    """NEFTune: add uniform noise in [-m, m], m = alpha / sqrt(L * d), to the input embeddings while training.

    L is the (padded) sequence length and d the embedding width. The hook checks the module's training flag, so
    evaluation and generation (model.eval()) see clean embeddings; remove the handle when training is done.
    """

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not module.training:
            return output
        magnitude = alpha / math.sqrt(output.size(1) * output.size(2))
        return output + torch.zeros_like(output).uniform_(-magnitude, magnitude)

    return model.get_input_embeddings().register_forward_hook(hook)


def causal_lm_objective(label_smoothing: float) -> Objective:
    """The causal-LM objective, with label smoothing in its training loss when asked."""
    if not label_smoothing:
        return CAUSAL_LM
    return replace(CAUSAL_LM, loss_sum=partial(token_loss_sum, label_smoothing=label_smoothing))
