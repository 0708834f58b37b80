"""Causal attention for CPU training as batched matmuls (`train.attention`).

On CPU, torch's fused SDPA kernel is slow where training spends its time: forward + backward of one layer on
8 rows of 128 tokens (9 heads of 64, bf16) take it 16-19 ms, against 4 ms for `baddbmm` + `softmax` + `bmm` over
blocks of 128 query positions (`python bench/attention_kernels.py`: 2.5-5x for rows of 64-512 tokens). The
batched matmuls run near the machine's matmul peak; the fused kernel does not.

Forward only it is also 1.4-3.4x faster than the fused kernel (B16×64 tokens 0.43 against 1.36 ms a layer,
B4×512 4.8 against 16.4 ms), so forward-only passes use it too (`precision.inference`): label scoring runs its
prompts right-padded and unmasked for it (`label_scoring.prefill`).

The fast path applies only where it computes the same function: a causal self-attention (the module says so)
without a mask (`numerics.model_inputs` drops the mask of right-padded batches), no dropout, no soft-capping or
attention sinks, queries and keys of the same length, on CPU. Anything else (masked or left-padded batches,
decoding steps on a cache, packed batches with their block-diagonal mask) goes to transformers' own SDPA
function unchanged.

Precision: the scores and probabilities are rounded to the input dtype before the next matmul, as in
transformers' eager attention under autocast. Against a float64 reference the bf16 output error is ~8e-3
relative (the fused kernel: ~2e-3); the training guard is the eval loss of the speed bench.
"""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from tunesmith.compat.patches import Checked, one_line

NAME = "tunesmith_cpu_causal"
# Checked on these; on others the switch still happens, its calls are counted, and the speed bench is the guard.
CHECKED_ON = (Checked("transformers", ">=5.24,<5.26"), Checked("torch", ">=2.13,<2.14"))
_calls: Counter[str] = Counter()  # calls of `cpu_causal_attention`: all ("any") and those on the fast path
_UNSUPPORTED = ("softcap", "s_aux", "sinks", "output_attentions")


# Keyword of a forward call on a cache of unpadded, equally long prefixes, with right-padded rows after them and
# no attention mask (`label_scoring.SharedPrefix`): transformers builds a purely causal mask offset by the
# cache's length, which the fast path computes instead. Ignored by every other attention function.
AFTER_PREFIX = "tunesmith_after_prefix"
_QUERY_BLOCK = 128  # query rows per matmul block: measured fastest of 32-256 (bench/attention_kernels.py)


@functools.lru_cache(maxsize=64)
def _causal_bias(groups: int, start: int, rows: int, keys: int, dtype: torch.dtype) -> torch.Tensor:
    """(groups·rows, keys) additive mask for query positions start..start+rows-1 (row r is position
    start + r mod rows) over key positions 0..keys-1."""
    position = torch.arange(start, start + rows)[:, None]
    bias = torch.zeros(rows, keys, dtype=dtype).masked_fill_(torch.arange(keys)[None, :] > position, float("-inf"))
    return bias.repeat(groups, 1)


def matmul_causal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(QKᵀ·scale + causal mask)·V for q (B, H, S, D) and k, v (B, KV, P+S, D); returns (B, H, S, D).

    The queries are the last S of the P+S key positions (P > 0: keys and values of a prefix computed earlier
    come first, and every query sees all of them). The H/KV query heads that share a key/value head are stacked
    along the rows, so grouped-query attention needs no copies of the keys and values. Queries go in blocks of
    128 positions, each against the keys up to its last position: that skips most of the masked half of QKᵀ
    and keeps each block's scores cache-sized.
    """
    batch, heads, length, dim = query.shape
    kv_heads, value_dim = key.shape[1], value.shape[-1]
    groups, offset = heads // kv_heads, key.shape[2] - length
    q = query.reshape(batch * kv_heads, groups, length, dim)
    k = key.reshape(batch * kv_heads, offset + length, dim)
    v = value.reshape(batch * kv_heads, offset + length, value_dim)
    blocks = []
    for start in range(0, length, _QUERY_BLOCK):
        end = min(start + _QUERY_BLOCK, length)
        rows = q[:, :, start:end].reshape(batch * kv_heads, groups * (end - start), dim)
        bias = _causal_bias(groups, offset + start, end - start, offset + end, query.dtype)
        keys, values = k[:, : offset + end], v[:, : offset + end]
        probs = torch.softmax(torch.baddbmm(bias, rows, keys.transpose(1, 2), alpha=scale), dim=-1)
        blocks.append(torch.bmm(probs, values).view(batch * kv_heads, groups, end - start, value_dim))
    out = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=2)
    return out.view(batch, heads, length, value_dim)


def _fast_path_applies(module: nn.Module, query: torch.Tensor, key: torch.Tensor, mask: Any, kwargs: dict) -> bool:
    after_prefix = kwargs.get(AFTER_PREFIX) is True  # the caller vouches that the mask is only causal
    return (
        (mask is None or after_prefix)
        and query.device.type == "cpu"
        and getattr(module, "is_causal", False) is True
        and kwargs.get("is_causal") is not False
        and (query.shape[2] == key.shape[2] or (after_prefix and query.shape[2] < key.shape[2]))
        and query.shape[2] > 1
        and query.shape[1] % key.shape[1] == 0
        and kwargs.get("position_bias") is None
        and not any(kwargs.get(name) for name in _UNSUPPORTED)
    )


def cpu_causal_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature; returns (B, S, H, D) like `sdpa_attention_forward`."""
    _calls["any"] += 1
    if dropout == 0.0 and _fast_path_applies(module, query, key, attention_mask, kwargs):
        _calls["fast"] += 1
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        out = matmul_causal_attention(query, key, value, scale)
        return out.transpose(1, 2).contiguous(), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


AttentionInterface.register(NAME, cpu_causal_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)  # the same masks as SDPA: none when causal suffices


def _pretrained(model: nn.Module) -> nn.Module | None:
    """The transformers model inside any PEFT wrapper, when it can switch attention functions."""
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    can_switch = getattr(base, "_can_set_attn_implementation", None)
    return base if callable(can_switch) and can_switch() else None


@dataclass
class AttentionSwitch:
    """Whether a model trains on `cpu_causal_attention`, and how often the model called it (all, fast path)."""

    active: bool = False
    calls: int = 0
    fast_calls: int = 0

    def __bool__(self) -> bool:
        return self.active


@contextlib.contextmanager
def matmul_attention(
    model: nn.Module, enabled: bool = True, problems: list[str] | None = None
) -> Iterator[AttentionSwitch]:
    """Within the block, a model on SDPA uses `cpu_causal_attention`; yields whether it does and, once the block
    ends, how often the model called it (zero calls after training steps: transformers no longer dispatches
    through the attention registry, and the caller reports the patch as not running).

    The model's own setting comes back afterwards, so exports and later inference are unchanged. Switching
    never raises: a failure to switch or to switch back is a line in `problems`, and the run goes on."""
    problems = [] if problems is None else problems
    switch = AttentionSwitch()
    base = _pretrained(model) if enabled else None
    original = getattr(getattr(base, "config", None), "_attn_implementation", None)
    if base is None or original != "sdpa" or next(base.parameters()).device.type != "cpu":
        yield switch
        return
    try:
        base.set_attn_implementation(NAME)
    except Exception as exc:  # noqa: BLE001 - the model's own attention trains instead
        problems.append(f"train.attention: could not switch to {NAME} ({one_line(exc)})")
        yield switch
        return
    switch.active, before = True, dict(_calls)
    try:
        yield switch
    finally:
        switch.calls = _calls["any"] - before.get("any", 0)
        switch.fast_calls = _calls["fast"] - before.get("fast", 0)
        try:
            base.set_attn_implementation(original)
        except Exception as exc:  # noqa: BLE001 - reported; the run's weights do not depend on it
            problems.append(f"train.attention: could not switch back to {original} ({one_line(exc)})")
