"""The KV cache of a continuous batch: one row per request, left-padded to a common length, with its padding mask.

Rows join with their prompt's keys and values (padded on the left to the batch's length, or the batch padded to
theirs) and leave by index; columns that no row uses any more are dropped from the left, so a long finished
request does not keep costing attention for the rows that outlive it. Each layer's keys and values live in a
buffer with room for `ROOM` more columns, so a decode step writes its column in place instead of copying the
whole cache (a concatenation per layer was ~10% of a 16-row step of smollm2-135m).
"""

from __future__ import annotations

import torch

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # per decoder layer: keys, values [rows, kv_heads, columns, dim]
ROOM = 64  # columns allocated ahead


class BatchCache:
    def __init__(self) -> None:
        self.layers: Layers = []  # views of `_buffers` over the columns in use
        self._buffers: Layers = []
        self.mask: torch.Tensor | None = None  # [rows, columns] bool, True where a column holds a real token

    @property
    def rows(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    def join(self, layers: Layers, length: int) -> None:
        """Append one request's prompt keys and values (a single row of `length` columns) as the last row."""
        new_mask = torch.ones(1, length, dtype=torch.bool)
        if self.mask is None:
            self._set(list(layers), new_mask)
            return
        width = max(self.mask.shape[1], length)
        joined = [
            (
                torch.cat([_pad_left(keys, width), _pad_left(new_keys, width)]),
                torch.cat([_pad_left(values, width), _pad_left(new_values, width)]),
            )
            for (keys, values), (new_keys, new_values) in zip(self.layers, layers, strict=True)
        ]
        self._set(joined, torch.cat([_pad_left_mask(self.mask, width), _pad_left_mask(new_mask, width)]))

    def _set(self, layers: Layers, mask: torch.Tensor) -> None:
        self.mask, self._buffers = mask, [(_with_room(keys), _with_room(values)) for keys, values in layers]
        self.layers = [(keys[:, :, : mask.shape[1]], values[:, :, : mask.shape[1]]) for keys, values in self._buffers]

    def step_mask(self) -> torch.Tensor:
        """The attention mask of a decode step: every column so far, plus the new token's."""
        assert self.mask is not None
        return torch.cat([self.mask, torch.ones(self.mask.shape[0], 1, dtype=torch.bool)], dim=1)

    def append(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add one column (every row's new key and value, [rows, kv_heads, 1, dim]) to `layer`; returns its
        keys and values. The mask follows with `accept_step` once every layer has its column."""
        assert self.mask is not None
        column = self.mask.shape[1]
        key_buffer, value_buffer = self._buffers[layer]
        if column == key_buffer.shape[2]:
            key_buffer, value_buffer = _with_room(key_buffer), _with_room(value_buffer)
            self._buffers[layer] = (key_buffer, value_buffer)
        key_buffer[:, :, column : column + 1] = keys
        value_buffer[:, :, column : column + 1] = values
        self.layers[layer] = (key_buffer[:, :, : column + 1], value_buffer[:, :, : column + 1])
        return self.layers[layer]

    def accept_step(self, mask: torch.Tensor) -> None:
        self.mask = mask

    def keep(self, indices: list[int]) -> None:
        """Keep only these rows (in this order); then drop the leading columns that every kept row pads."""
        if not indices:
            self.layers, self._buffers, self.mask = [], [], None
            return
        assert self.mask is not None
        index = torch.tensor(indices)
        mask = self.mask[index]
        first = int(mask.any(dim=0).nonzero()[0])
        self._set([(keys[index, :, first:], values[index, :, first:]) for keys, values in self.layers], mask[:, first:])


def _with_room(states: torch.Tensor) -> torch.Tensor:
    """A buffer holding `states` [rows, heads, columns, dim] in its first columns, with ROOM columns free."""
    rows, heads, columns, dim = states.shape
    buffer = states.new_empty(rows, heads, columns + ROOM, dim)
    buffer[:, :, :columns] = states
    return buffer


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
