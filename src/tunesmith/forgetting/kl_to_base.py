"""KL(base ‖ tuned) on the next-token distributions, the base computed without a second model where possible.

For adapter methods the base is the same weights with the adapter switched off (PEFT's `disable_adapter`): no
memory beyond the activations of one more forward pass. Other methods train the base weights themselves, so
the reference is a frozen bf16 copy taken before training (its size is reported).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn

from tunesmith.errors import UserError
from tunesmith.train.numerics import is_prompt_learning
from tunesmith.train.penalties import KLPenalty


@contextlib.contextmanager
def _adapter_off(model: nn.Module) -> Iterator[nn.Module]:
    with model.disable_adapter():
        yield model


def frozen_copy(model: nn.Module) -> nn.Module:
    """A bf16 copy of `model` in eval mode with no trainable weights."""
    reference = copy.deepcopy(model).to(torch.bfloat16).eval()
    for param in reference.parameters():
        param.requires_grad_(False)
    return reference


def build(weight: float, model: nn.Module, on_replay: bool) -> tuple[KLPenalty, int]:
    """The penalty and the bytes of any copy it keeps (0 for adapters)."""
    if is_prompt_learning(model):
        raise UserError(
            "forgetting.kl_to_base does not work with prompt or prefix tuning (their virtual tokens have no "
            "adapter-off switch); use lora"
        )
    if callable(getattr(model, "disable_adapter", None)):
        return KLPenalty(weight, lambda: _adapter_off(model), on_replay), 0
    reference = frozen_copy(model)
    size = sum(p.numel() * p.element_size() for p in reference.parameters())
    return KLPenalty(weight, lambda: contextlib.nullcontext(reference), on_replay), size
