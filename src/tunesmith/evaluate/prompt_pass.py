"""One pass over the prompts for a classification-like evaluation: label likelihood and greedy answers.

Label scoring and generation both begin by running the prompt through the model; here it runs once per batch.
`label_scoring.prefill` runs the prompt prefixes (everything before the token that precedes the answer), the
candidate labels are scored on that cache (`score_candidates`, which cuts the cache back to the prefixes), and
greedy decoding continues from the same cache with that last prompt token. So an evaluation that reports both
scorings costs one prompt forward, not two.

Prompt and prefix tuning add virtual tokens inside every forward call, so their caches cannot be continued; those
models, and prompts whose generation prompt does not tokenize as prefix + that token, are generated separately
(`generate.generate_all`), with the same answers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.data.batching import eval_batches
from tunesmith.data.tokenize import pad_id, render
from tunesmith.evaluate.generate import Decoding, decode, generate_all
from tunesmith.evaluate.label_scoring import (
    Candidates,
    Prefilled,
    encode_all,
    prefill,
    score_candidates,
    shared_prefix,
)
from tunesmith.train.numerics import IGNORE_INDEX
from tunesmith.train.precision import inference

Messages = Sequence[dict[str, str]]


@dataclass
class Clock:
    """Wall and CPU seconds spent in one part of the pass."""

    wall: float = 0.0
    cpu: float = 0.0

    def add(self, started: tuple[float, float]) -> tuple[float, float]:
        now = time.perf_counter(), time.process_time()
        self.wall += now[0] - started[0]
        self.cpu += now[1] - started[1]
        return now


def now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


@dataclass
class PassResult:
    scores: torch.Tensor  # [rows, K] summed log-probabilities of each candidate label
    target_tokens: torch.Tensor  # [rows, K] tokens each candidate's score sums over (training's loss tokens)
    lengths: torch.Tensor  # [rows, K] prompt + candidate tokens, as training would encode the row
    answers: list[str]  # greedy answers of the first `generate_rows` rows
    label_time: Clock = field(default_factory=Clock)
    generate_time: Clock = field(default_factory=Clock)
    continued: int = 0  # answers decoded from the shared prompt cache (the others were generated separately)


def _continuable(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Messages], encoded: list[Candidates]
) -> list[bool]:
    """Whether each row's generation prompt is its candidates' prefix plus the first suffix token."""
    out = []
    for prompt, cand in zip(prompts, encoded, strict=True):
        ids = tokenizer(render(tokenizer, prompt, generation_prompt=True), add_special_tokens=False)["input_ids"]
        out.append(ids == cand.prefix + cand.suffixes[0][:1])
    return out


def _continue_answers(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prefilled: Prefilled,
    batch: list[Candidates],
    rows: list[int],
    k: int,
    decoding: Decoding,
) -> list[str]:
    """Greedy answers of `rows` of a scored batch, decoded from its prefix cache."""
    chosen = prefilled.select(rows, copies=k)  # the cache holds each prefix K times after scoring
    last = torch.tensor([[batch[j].suffixes[0][0]] for j in rows])
    ids = torch.cat([chosen.ids, last], dim=1)
    mask = torch.cat([chosen.mask, torch.ones_like(last)], dim=1)
    return decode(model, tokenizer, ids, mask, decoding, chosen.cache)


def score_and_generate(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Messages],
    labels: Sequence[str],
    generate_rows: int,
    decoding: Decoding,
    batch_size: int = 16,
    bf16: bool = False,
) -> PassResult:
    """Label log-probabilities of every prompt and greedy answers of the first `generate_rows` prompts."""
    encoded = encode_all(tokenizer, prompts, labels)
    k, pad = len(labels), pad_id(tokenizer)
    continuable = _continuable(tokenizer, prompts[:generate_rows], encoded[:generate_rows])
    result = PassResult(
        scores=torch.empty((len(encoded), k)),
        target_tokens=torch.tensor([[sum(t != IGNORE_INDEX for t in ts) for ts in c.targets] for c in encoded]),
        lengths=torch.tensor([[len(c.prefix) + len(s) for s in c.suffixes] for c in encoded]),
        answers=[""] * generate_rows,
    )
    with inference(model, bf16):
        started = now()
        shared = shared_prefix(model, encoded)
        result.label_time.add(started)
        for idx in eval_batches([len(c.prefix) for c in encoded], batch_size):
            started = now()
            batch = [encoded[i] for i in idx]
            prefilled = prefill(model, batch, pad, shared)
            result.scores[idx] = score_candidates(model, prefilled, batch, pad)
            started = result.label_time.add(started)
            rows = [j for j, i in enumerate(idx) if i < generate_rows and continuable[i]]
            if rows:
                answers = _continue_answers(model, tokenizer, prefilled, batch, rows, k, decoding)
                for j, text in zip(rows, answers, strict=True):
                    result.answers[idx[j]] = text
                result.continued += len(rows)
            result.generate_time.add(started)
        rest = [i for i in range(generate_rows) if not continuable[i]]
        if rest:
            started = now()
            answers = generate_all(model, tokenizer, [prompts[i] for i in rest], decoding, batch_size, bf16)
            for i, text in zip(rest, answers, strict=True):
                result.answers[i] = text
            result.generate_time.add(started)
    return result
