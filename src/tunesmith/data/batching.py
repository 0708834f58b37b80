"""Deterministic batch plans and padding.

The order of batches depends only on (seed, epoch), so a resumed run sees exactly the batches an uninterrupted
run would have seen. Batches are length-grouped: examples of similar length share a batch, which cuts padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tunesmith.data.tokenize import Encoded
from tunesmith.train.numerics import IGNORE_INDEX

_GROUP_BATCHES = 16  # sort by length within windows of this many batches: little padding, still shuffled


def batch_plan(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_by_length: bool = True
) -> list[list[int]]:
    """Index lists, one per micro-batch, for one epoch."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=gen).tolist()
    if group_by_length:
        window = batch_size * _GROUP_BATCHES
        order = [
            i for s in range(0, len(order), window) for i in sorted(order[s : s + window], key=lambda k: -lengths[k])
        ]
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if group_by_length:
        batch_order = torch.randperm(len(batches), generator=gen).tolist()
        batches = [batches[k] for k in batch_order]
    return batches


def collate(examples: Sequence[Encoded], pad_id: int, left_pad: bool = False) -> dict[str, torch.Tensor]:
    """Pad a list of encoded examples into input_ids / attention_mask / labels tensors."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, ex in enumerate(examples):
        n = len(ex.input_ids)
        cols = slice(width - n, width) if left_pad else slice(0, n)
        ids[row, cols] = torch.tensor(ex.input_ids)
        labels[row, cols] = torch.tensor(ex.labels)
        mask[row, cols] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Fixed, length-sorted batches for evaluation (less padding, same result every time)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
