"""Batched generation (greedy or seeded sampling, left padding, KV cache, stop strings) and exact-match scoring."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import Cache, PreTrainedTokenizerBase

from tunesmith.data.tokenize import render
from tunesmith.train.precision import inference

# Below this a temperature decodes greedily: the distribution is the argmax already (ties aside), and dividing logits
# by a denormal such as 2.2e-313 overflows to inf and NaN probabilities (schemathesis sent one to the server).
GREEDY_BELOW = 1e-4


@dataclass(frozen=True)
class Decoding:
    """How answers are decoded. Greedy at temperature 0, else sampled (temperature, nucleus `top_p`) from a seeded
    generator, so a sampled answer repeats for the same seed. An answer ends at EOS, after `max_new_tokens`, or
    just before the first of the `stop` strings (the row stops decoding there; the stop text is not returned)."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.temperature < 0 or not 0 < self.top_p <= 1 or "" in self.stop:
            raise ValueError(f"invalid decoding settings: {self}")

    def generate_kwargs(self, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
        """Keyword arguments of `model.generate` (HF stops each row at its own EOS or stop string)."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "use_cache": True,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
        if self.temperature >= GREEDY_BELOW:  # top_k 0: no top-k cut beside the nucleus
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=0)
        else:
            kwargs["do_sample"] = False
        if self.stop:
            kwargs.update(stop_strings=list(self.stop), tokenizer=tokenizer)
        return kwargs

    @contextlib.contextmanager
    def seeded(self) -> Iterator[None]:
        """Sampling draws from torch's global generator: seed a private copy of it, leave the caller's alone."""
        if self.temperature < GREEDY_BELOW:
            yield
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            yield


def eval_decoding(max_new_tokens: int, stop: Sequence[str]) -> Decoding:
    """Evaluation's decoding: greedy, so scores repeat; `eval.max_new_tokens` and `eval.stop`."""
    return Decoding(max_new_tokens, stop=tuple(stop))


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the earliest stop string in it (all of it when there is none)."""
    ends = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(ends)] if ends else text


def decode(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    ids: torch.Tensor,
    mask: torch.Tensor,
    decoding: Decoding,
    cache: Cache | None = None,
) -> list[str]:
    """Answers after left-padded prompt `ids`; a `cache` holding all but the last prompt column continues from it
    (only that column and the new tokens run). Call inside `precision.inference`."""
    with decoding.seeded():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            **decoding.generate_kwargs(tokenizer),
            **({"cache": cache} if cache is not None else {}),
        )
    texts = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
    return [cut_at_stop(t, decoding.stop).strip() for t in texts]


def generate_batch(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[dict]],
    decoding: Decoding,
    bf16: bool = False,
) -> list[str]:
    """Answers to a batch of conversations (each ends with a user turn)."""
    prompts = [render(tokenizer, conv, generation_prompt=True) for conv in conversations]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    with inference(model, bf16):
        return decode(model, tokenizer, enc["input_ids"], enc["attention_mask"], decoding)


def generate_all(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[dict]],
    decoding: Decoding,
    batch_size: int = 16,
    bf16: bool = False,
) -> list[str]:
    """Answers for many conversations, batched by prompt length so little padding is computed."""
    order = sorted(range(len(conversations)), key=lambda i: len(str(conversations[i])))
    answers: list[str] = [""] * len(conversations)
    with inference(model, bf16):  # once for all batches: the bf16 weight copies are made once
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = generate_batch(model, tokenizer, [conversations[i] for i in idx], decoding, bf16)
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
