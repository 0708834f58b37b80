"""What a task optimises: how a batch is built, and how it becomes a summed loss plus its normaliser.

The loop, accumulation and evaluation are shared; a task (causal-LM SFT, classification, token tagging)
supplies only this small object. Loss normalisation stays in one place (`numerics.accumulate_step`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tunesmith.data.batching import collate, collate_packed
from tunesmith.train.numerics import count_trainable, token_loss_sum

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Objective:
    name: str
    loss_sum: Callable[[nn.Module, Batch], tuple[torch.Tensor, int]]  # (summed loss, items it covers)
    count: Callable[[Batch], int]  # items a batch contributes to the step's normaliser
    collate: Callable[[Sequence[Any], int], Batch]  # (examples, pad id) -> tensors
    length: Callable[[Any], int]  # an example's length, for length-grouped batches
    # Training micro-batches with several examples per row (`train.packing`); None: the task cannot pack.
    pack: Callable[[Sequence[Any], int], Batch] | None = None


CAUSAL_LM = Objective(
    name="causal_lm",
    loss_sum=token_loss_sum,
    count=lambda batch: count_trainable(batch["labels"]),
    collate=collate,
    length=lambda example: len(example.input_ids),
    pack=collate_packed,
)
