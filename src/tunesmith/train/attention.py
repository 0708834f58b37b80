"""Causal attention for CPU training as three batched matmuls (`train.attention`).

On CPU, torch's fused SDPA kernel is slow where training spends its time: its backward costs 18-24 ms per layer
for 8 rows of 128 tokens (9 heads of 64), where `baddbmm` + `softmax` + `bmm` take 4.4 ms forward and backward
together, and the gap grows as rows get shorter (`python bench/attention_kernels.py`). The batched matmuls run
at the machine's matmul peak; the fused kernel does not.

The fast path applies only where it computes the same function: a causal self-attention (the module says so)
without a mask (`numerics.model_inputs` drops the mask of right-padded batches), no dropout, no soft-capping or
attention sinks, queries and keys of the same length, on CPU, with gradients on. Anything else (evaluation,
generation, packed batches with their block-diagonal mask) goes to transformers' own SDPA function unchanged.

Precision: the scores and probabilities are rounded to the input dtype before the next matmul, as in
transformers' eager attention under autocast. Against a float64 reference the bf16 output error is ~8e-3
relative (the fused kernel: ~2e-3); the training guard is the eval loss of the speed bench.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

NAME = "tunesmith_cpu_causal"
_UNSUPPORTED = ("softcap", "s_aux", "sinks", "output_attentions")


@functools.lru_cache(maxsize=32)
def _causal_bias(groups: int, length: int, dtype: torch.dtype) -> torch.Tensor:
    """(groups·length, length) additive mask: row r is query position r mod length."""
    upper = torch.full((length, length), float("-inf"), dtype=dtype).triu(1)
    return upper.repeat(groups, 1)


def matmul_causal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(QKᵀ·scale + causal mask)·V for q (B, H, S, D) and k, v (B, KV, S, D); returns (B, H, S, D).

    The H/KV query heads that share a key/value head are stacked along the rows, so grouped-query attention
    needs no copies of the keys and values, and each matmul is one large batched call.
    """
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    q = query.reshape(batch * kv_heads, groups * length, dim)
    k = key.reshape(batch * kv_heads, length, dim)
    v = value.reshape(batch * kv_heads, length, value.shape[-1])
    bias = _causal_bias(groups, length, query.dtype)
    probs = torch.softmax(torch.baddbmm(bias, q, k.transpose(1, 2), alpha=scale), dim=-1)
    return torch.bmm(probs, v).view(batch, heads, length, value.shape[-1])


def _fast_path_applies(module: nn.Module, query: torch.Tensor, key: torch.Tensor, mask: Any, kwargs: dict) -> bool:
    return (
        mask is None
        and torch.is_grad_enabled()
        and query.device.type == "cpu"
        and getattr(module, "is_causal", False) is True
        and kwargs.get("is_causal") is not False
        and query.shape[2] == key.shape[2] > 1
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
    if dropout == 0.0 and _fast_path_applies(module, query, key, attention_mask, kwargs):
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


@contextlib.contextmanager
def training_attention(model: nn.Module, mode: str) -> Iterator[bool]:
    """Within the block, a model on SDPA uses `cpu_causal_attention` (mode "auto"); yields whether it does.

    The model's own setting comes back afterwards, so exports and later inference are unchanged."""
    base = _pretrained(model) if mode == "auto" else None
    original = getattr(getattr(base, "config", None), "_attn_implementation", None)
    if base is None or original != "sdpa" or next(base.parameters()).device.type != "cpu":
        yield False
        return
    base.set_attn_implementation(NAME)
    try:
        yield True
    finally:
        base.set_attn_implementation(original)
