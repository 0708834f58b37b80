"""Batched greedy generation (left padding, KV cache) and exact-match scoring."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn
from transformers import Cache, PreTrainedTokenizerBase

from tunesmith.data.tokenize import render
from tunesmith.train.precision import inference


def greedy(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    ids: torch.Tensor,
    mask: torch.Tensor,
    max_new_tokens: int,
    cache: Cache | None = None,
) -> list[str]:
    """Greedy answers after left-padded prompt `ids`; a `cache` holding all but the last prompt column continues
    from it (only that column and the new tokens run). Call inside `precision.inference`."""
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        use_cache=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **({"cache": cache} if cache is not None else {}),
    )
    return [t.strip() for t in tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)]


def generate_batch(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[dict]],
    max_new_tokens: int = 64,
    bf16: bool = False,
) -> list[str]:
    """Greedy answers to a batch of conversations (each ends with a user turn)."""
    prompts = [render(tokenizer, conv, generation_prompt=True) for conv in conversations]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    with inference(model, bf16):
        return greedy(model, tokenizer, enc["input_ids"], enc["attention_mask"], max_new_tokens)


def generate_all(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[dict]],
    max_new_tokens: int = 64,
    batch_size: int = 16,
    bf16: bool = False,
) -> list[str]:
    """Answers for many conversations, batched by prompt length so little padding is computed."""
    order = sorted(range(len(conversations)), key=lambda i: len(str(conversations[i])))
    answers: list[str] = [""] * len(conversations)
    with inference(model, bf16):  # once for all batches: the bf16 weight copies are made once
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = generate_batch(model, tokenizer, [conversations[i] for i in idx], max_new_tokens, bf16)
            for i, text in zip(idx, batch, strict=True):
                answers[i] = text
    return answers


def normalize(text: str) -> str:
    """Whitespace-insensitive, case-sensitive form used by exact match."""
    return re.sub(r"\s+", " ", text).strip()


def exact_match(predictions: Sequence[str], targets: Sequence[str]) -> float:
    """Share of predictions equal to their target after whitespace normalisation."""
    if not targets:
        return float("nan")
    hits = sum(normalize(p) == normalize(t) for p, t in zip(predictions, targets, strict=True))
    return hits / len(targets)
