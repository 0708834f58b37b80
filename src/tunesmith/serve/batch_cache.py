"""The KV cache of a continuous batch: one row per request, left-padded to a common length, with its padding mask.

Rows join with their prompt's cache (padded on the left to the batch's length, or the batch padded to theirs) and
leave by index; columns that no row uses any more are dropped from the left, so a long finished request does not
keep costing attention for the rows that outlive it.
"""

from __future__ import annotations

import torch
from transformers import Cache
from transformers.cache_utils import DynamicLayer


class BatchCache:
    def __init__(self) -> None:
        self.cache: Cache | None = None
        self.mask: torch.Tensor | None = None  # [rows, columns], 1 where a column holds a real token

    @property
    def rows(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    def join(self, cache: Cache, length: int) -> None:
        """Append one request's prompt cache (a single row of `length` real columns) as the batch's last row."""
        _check_full_attention(cache)
        new_mask = torch.ones(1, length, dtype=torch.long)
        if self.cache is None or self.mask is None:
            self.cache, self.mask = cache, new_mask
            return
        width = max(self.mask.shape[1], length)
        for old, new in zip(self.cache.layers, cache.layers, strict=True):
            old.keys = torch.cat([_pad_left(old.keys, width), _pad_left(new.keys, width)])
            old.values = torch.cat([_pad_left(old.values, width), _pad_left(new.values, width)])
        self.mask = torch.cat([_pad_left_mask(self.mask, width), _pad_left_mask(new_mask, width)])

    def extended_mask(self) -> torch.Tensor:
        """The attention mask of a decode step: every column so far, plus the new token's."""
        assert self.mask is not None
        return torch.cat([self.mask, torch.ones(self.mask.shape[0], 1, dtype=self.mask.dtype)], dim=1)

    def accept_step(self, cache: Cache, mask: torch.Tensor) -> None:
        self.cache, self.mask = cache, mask

    def keep(self, indices: list[int]) -> None:
        """Keep only these rows (in this order); then drop the leading columns that every kept row pads."""
        if not indices:
            self.cache = self.mask = None
            return
        assert self.cache is not None and self.mask is not None
        index = torch.tensor(indices)
        self.mask = self.mask[index]
        first = int(self.mask.any(dim=0).nonzero()[0])
        self.mask = self.mask[:, first:]
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, first:]
            layer.values = layer.values[index, :, first:]


def _pad_left(states: torch.Tensor, width: int) -> torch.Tensor:
    """[rows, heads, columns, dim] padded with zeros on the left to `width` columns."""
    missing = width - states.shape[2]
    if missing == 0:
        return states
    pad = states.new_zeros(states.shape[0], states.shape[1], missing, states.shape[3])
    return torch.cat([pad, states], dim=2)


def _pad_left_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - mask.shape[1]
    return mask if missing == 0 else torch.cat([mask.new_zeros(mask.shape[0], missing), mask], dim=1)


def _check_full_attention(cache: Cache) -> None:
    kinds = {type(layer).__name__ for layer in cache.layers if type(layer) is not DynamicLayer}
    if kinds:
        raise NotImplementedError(
            f"continuous batching needs full-attention cache layers; this model uses {', '.join(sorted(kinds))}"
        )
