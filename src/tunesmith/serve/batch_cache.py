"""The KV cache of a continuous batch: one row per request, left-padded to a common length, with its padding mask.

Rows join with their prompt's cache (padded on the left to the batch's length, or the batch padded to theirs) and
leave by index; columns that no row uses any more are dropped from the left, so a long finished request does not
keep costing attention for the rows that outlive it.

Each layer keeps its keys and values in buffers with spare columns (`RoomyLayer`): a decode step writes its one
new column in place. transformers' default layer concatenates, copying every layer's whole cache at every step.
"""

from __future__ import annotations

import torch
from transformers import Cache
from transformers.cache_utils import DynamicLayer

ROOM = 64  # spare columns allocated at a time: one reallocation per 64 decode steps


class RoomyLayer(DynamicLayer):
    """A full-attention cache layer whose `keys`/`values` are views of the first columns of larger buffers."""

    def set(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Replace the contents (a join or a leave), with ROOM spare columns."""
        self._buffers_for(keys, values, keys.shape[-2] + ROOM)
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        used, new = self.keys.shape[-2], key_states.shape[-2]
        if used + new > self._key_buffer.shape[-2]:
            self._buffers_for(self.keys, self.values, used + new + ROOM)
        self._key_buffer[:, :, used : used + new] = key_states
        self._value_buffer[:, :, used : used + new] = value_states
        self.keys = self._key_buffer[:, :, : used + new]
        self.values = self._value_buffer[:, :, : used + new]
        return self.keys, self.values

    def _buffers_for(self, keys: torch.Tensor, values: torch.Tensor, columns: int) -> None:
        used = keys.shape[-2]
        self._key_buffer = keys.new_empty(*keys.shape[:2], columns, keys.shape[3])
        self._value_buffer = values.new_empty(*values.shape[:2], columns, values.shape[3])
        self._key_buffer[:, :, :used] = keys
        self._value_buffer[:, :, :used] = values
        self.keys, self.values = self._key_buffer[:, :, :used], self._value_buffer[:, :, :used]
        self.device = keys.device


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
            self.cache = Cache(layers=[RoomyLayer() for _ in cache.layers])
            for mine, new in zip(self.cache.layers, cache.layers, strict=True):
                mine.set(new.keys, new.values)
            self.mask = new_mask
            return
        width = max(self.mask.shape[1], length)
        for old, new in zip(self.cache.layers, cache.layers, strict=True):
            keys = torch.cat([_pad_left(old.keys, width), _pad_left(new.keys, width)])
            values = torch.cat([_pad_left(old.values, width), _pad_left(new.values, width)])
            old.set(keys, values)
        self.mask = torch.cat([_pad_left_mask(self.mask, width), _pad_left_mask(new_mask, width)])

    def extended_mask(self) -> torch.Tensor:
        """The attention mask of a decode step: every column so far, plus the new token's."""
        assert self.mask is not None
        return torch.cat([self.mask, torch.ones(self.mask.shape[0], 1, dtype=self.mask.dtype)], dim=1)

    def accept_step(self, mask: torch.Tensor) -> None:
        """The step's forward wrote its column into the layers; the mask grows with it."""
        self.mask = mask

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
            layer.set(layer.keys[index, :, first:], layer.values[index, :, first:])


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
