"""One forward pass per engine step for every request in flight: the decoding rows' next tokens and pieces of
new prompts together.

A step's tokens go through the model as a batch of one-token rows (`[tokens, 1]`), so every linear multiplies
all of them at once and a new prompt costs the step a few more rows instead of a forward pass of its own. On a
2-core CPU a 16-row decode step plus a 17-token prompt took 100 ms this way against 156 ms as two passes (the
weights are read once, and small products are dominated by reading them). Only attention needs to know which
token belongs to which request; `StepPlan.attend`, switched in as the model's attention function, does that:
- the first `decoding` tokens are one per row of the batch cache: each row's new key and value are appended to
  its row and it attends over that row (left padding masked);
- then each `Chunk` is a run of one prompt's tokens: they are appended to that prompt's own keys and values and
  attend causally over them.
Each layer's module carries its `layer_idx`, so the plan knows which layer's keys and values to extend.
Only the rows whose next token is chosen this step (every decoding row, and a prompt's last token) reach the
output layer. vLLM calls this chunked prefill.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from tunesmith.compat.attention import cpu_causal_attention
from tunesmith.serve.batch_cache import BatchCache, Layers

NAME = "tunesmith_ragged"
_UNSUPPORTED = ("softcap", "s_aux", "sinks", "sliding_window", "position_bias")
_NO_MASK = torch.ones(1, 1, 1, 1, dtype=torch.bool)  # a 4D mask makes transformers build none (attention is ours)


@dataclass
class Chunk:
    """`length` tokens of one prompt computed this step; `layers` holds that prompt's keys and values so far,
    [1, kv_heads, columns, dim] per layer (empty before its first chunk), and is extended in place."""

    length: int
    layers: Layers = field(default_factory=list)


@dataclass
class StepPlan:
    decoding: int  # rows of `batch` that decode one token each: the step's first tokens
    batch: BatchCache
    mask: torch.Tensor | None  # [decoding, columns + 1] bool: the batch's padding mask with this step's column
    chunks: list[Chunk]
    _bias: torch.Tensor | None = field(default=None, repr=False)

    def _decode(self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float):
        """Each decoding row's one query over its row of the batch cache, as two batched matmuls: the query heads
        that share a key/value head are stacked as rows (no copies of keys for grouped-query attention). 20%
        faster than the fused SDPA kernel for one query per row on this CPU."""
        assert self.mask is not None
        rows, heads, _, dim = query[: self.decoding].shape
        keys, values = self.batch.append(layer, key[: self.decoding], value[: self.decoding])
        if self._bias is None:  # the same padding for every layer: built once a step
            self._bias = torch.zeros(self.mask.shape).masked_fill_(~self.mask, float("-inf"))
            self._bias = self._bias[:, None, None, :]
        grouped = query[: self.decoding].reshape(rows, keys.shape[1], heads // keys.shape[1], dim)
        scores = torch.matmul(grouped, keys.transpose(2, 3)).float() * scale + self._bias  # softmax in fp32, as SDPA
        out = torch.matmul(torch.softmax(scores, dim=-1).to(values.dtype), values)  # [rows, kv_heads, group, dim]
        return out.reshape(rows, 1, heads, dim)

    def attend(self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float):
        """query [tokens, heads, 1, dim], key and value [tokens, kv_heads, 1, dim] → [tokens, 1, heads, dim]."""
        outputs = []
        if self.decoding:
            outputs.append(self._decode(layer, query, key, value, scale))
        start = self.decoding
        for chunk in self.chunks:
            span = slice(start, start + chunk.length)
            # [length, heads, 1, dim] → [1, heads, length, dim]: one sequence of `length` positions
            q, k, v = (t[span].transpose(0, 2) for t in (query, key, value))
            if layer < len(chunk.layers):
                past_keys, past_values = chunk.layers[layer]
                k, v = torch.cat([past_keys, k], dim=2), torch.cat([past_values, v], dim=2)
                chunk.layers[layer] = (k, v)
            else:
                chunk.layers.append((k, v))
            past = k.shape[2] - chunk.length
            causal = torch.arange(k.shape[2])[None, :] <= past + torch.arange(chunk.length)[:, None]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=causal, scale=scale, enable_gqa=True)
            outputs.append(out.permute(2, 0, 1, 3))  # [length, 1, heads, dim]
            start += chunk.length
        return torch.cat(outputs).contiguous() if len(outputs) > 1 else outputs[0].contiguous()


def ragged_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature; the step's plan comes as the `ragged` keyword. A call without
    one (the same model used meanwhile by `generate`, say) is an ordinary attention call."""
    plan = kwargs.pop("ragged", None)
    if plan is None:
        return cpu_causal_attention(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    unsupported = [name for name in _UNSUPPORTED if kwargs.get(name) is not None]
    if unsupported or dropout:
        raise NotImplementedError(f"serving attention: unsupported {', '.join(unsupported) or 'dropout'}")
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return plan.attend(module.layer_idx, query, key, value, scale), None


AttentionInterface.register(NAME, ragged_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def _base(model: nn.Module) -> nn.Module:
    return model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model


def unservable_reason(model: nn.Module) -> str | None:
    """Why `model` cannot be served this way (None when it can)."""
    reason = unsupported_reason(getattr(_base(model), "config", None))
    return None if reason is None else f"continuous batching needs full attention in every layer; {reason}"


def unsupported_reason(config: Any) -> str | None:
    """Why a model cannot be served this way (None when it can): every layer must attend to the whole past."""
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    if kinds != {"full_attention"}:
        return f"its layers are {', '.join(sorted(kinds))}"
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return f"it attends through a sliding window of {config.sliding_window} tokens"
    return None


class RaggedModel:
    """Runs a step: `logits(plan, tokens, positions, **extra)` → [rows chosen, vocab] for every decoding row and
    the last token of each chunk in `ends` (indices into the step's tokens)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._keep: torch.Tensor | None = None

    def select_rows(self, _module: nn.Module, args: tuple) -> tuple:
        return (args[0][self._keep], *args[1:]) if self._keep is not None else args

    def logits(
        self, plan: StepPlan, tokens: list[int], positions: list[int], keep: list[int], **extra: Any
    ) -> torch.Tensor:
        self._keep = torch.tensor(keep, dtype=torch.long)
        try:
            out = self.model(
                input_ids=torch.tensor(tokens)[:, None],
                position_ids=torch.tensor(positions)[:, None],
                attention_mask=_NO_MASK,
                use_cache=False,
                logits_to_keep=1,
                ragged=plan,
                **extra,
            )
        finally:
            self._keep = None
        return out.logits[:, -1, :]


@contextlib.contextmanager
def ragged_model(model: nn.Module) -> Iterator[RaggedModel]:
    """While the block lasts, `model` attends through step plans and computes logits only for chosen rows."""
    base = _base(model)
    reason = unservable_reason(model)
    if reason is not None:
        raise NotImplementedError(reason)
    original = base.config._attn_implementation
    base.set_attn_implementation(NAME)
    runner = RaggedModel(model)
    output = model.get_output_embeddings()
    hook = output.register_forward_pre_hook(runner.select_rows, prepend=True)
    try:
        yield runner
    finally:
        hook.remove()
        base.set_attn_implementation(original)
