"""Deterministic batch plans, padding and packing.

The order of batches depends only on (seed, epoch), so a resumed run sees exactly the batches an uninterrupted
run would have seen. Batches are length-grouped: examples of similar length share a batch, which cuts padding.

Packing (`collate_packed`) lays the same micro-batch out with less padding: several examples share a row, each
with position ids restarting at 0 and no 2-D attention mask. transformers (>= 4.5x `masking_utils`) reads the
restarts as sequence boundaries and builds a block-diagonal causal mask, so no token attends across examples;
the first token of every packed example carries no label, so no example is trained to predict the next one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from tunesmith.data.tokenize import IGNORE_INDEX, Encoded

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


def split_by_tokens(indices: Sequence[int], lengths: Sequence[int], max_tokens: int | None) -> list[list[int]]:
    """Split one micro-batch into forward passes of at most `max_tokens` padded tokens each (where rows allow).

    The optimizer step is unchanged: its loss is normalised over all of its micro-batches' tokens
    (`numerics.accumulate_step`). What changes is the activation memory of each forward pass, and with it the
    speed on CPU: large fresh activation tensors cost page faults (docs/performance.md). Rows are sorted longest
    first, so each part is padded only to its own longest row; parts are as even as the budget allows.
    """
    rows = sorted(indices, key=lambda i: -lengths[i])
    if not max_tokens or not rows or len(rows) * lengths[rows[0]] <= max_tokens:
        return [list(indices)]
    parts = min(len(rows), math.ceil(len(rows) * lengths[rows[0]] / max_tokens))
    while True:
        size = math.ceil(len(rows) / parts)
        chunks = [rows[s : s + size] for s in range(0, len(rows), size)]
        if parts == len(rows) or all(len(c) * lengths[c[0]] <= max_tokens for c in chunks):
            return chunks
        parts += 1


TOKEN_MASK = "token_mask"  # packed batches: 1 on real tokens; not a model input (the model gets position_ids)


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First-fit-decreasing bins of example indices, each summing to at most `capacity` tokens (or one example)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        slot = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if slot is None:
            rows.append([i])
            room.append(capacity - lengths[i])
        else:
            rows[slot].append(i)
            room[slot] -= lengths[i]
    return rows


def collate_packed(examples: Sequence[Encoded], pad_id: int, capacity: int | None = None) -> dict[str, torch.Tensor]:
    """Pack examples into rows of at most `capacity` tokens: input_ids, labels, position_ids and `TOKEN_MASK`.

    The default capacity is the longest example, so no row attends over more tokens than in the padded layout
    (on CPU the block-diagonal mask is computed densely: wider rows cost more attention than the padding they
    save). When no row would hold two examples, the padded layout is returned: the same computation, with
    SDPA's cheaper padded-causal path.
    """
    lengths = [len(e.input_ids) for e in examples]
    rows = pack_rows(lengths, max(capacity or 0, *lengths))
    if len(rows) == len(examples):
        return collate(examples, pad_id)
    width = max(sum(lengths[i] for i in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            n, end = lengths[i], start + lengths[i]
            ids[r, start:end] = torch.tensor(examples[i].input_ids)
            labels[r, start + 1 : end] = torch.tensor(examples[i].labels[1:])  # position 0 is never a target
            positions[r, start:end] = torch.arange(n)
            mask[r, start:end] = 1
            start = end
        positions[r, start:] = torch.arange(width - start)  # the padding tail: a sequence of its own, unscored
    return {"input_ids": ids, "labels": labels, "position_ids": positions, TOKEN_MASK: mask}


def real_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Non-padding tokens of a padded or packed batch (the throughput unit)."""
    return int(batch[TOKEN_MASK if TOKEN_MASK in batch else "attention_mask"].sum())


def eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Fixed, length-sorted batches for evaluation (less padding, same result every time)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
