"""How one request's tokens are chosen: greedy at temperature 0, else sampled (temperature, nucleus top_p) from the
request's own seeded generator, so a seeded request repeats whatever else shares its batch."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tunesmith.evaluate.generate import GREEDY_BELOW


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1 or self.temperature < 0 or not 0 < self.top_p <= 1 or "" in self.stop:
            raise ValueError(f"invalid sampling settings: {self}")

    @property
    def greedy(self) -> bool:
        """Greedy decoding: temperature 0, or one so small that dividing by it would overflow."""
        return self.temperature < GREEDY_BELOW

    def hold(self) -> int:
        """Characters held back while streaming: a stop string may still be forming in them."""
        return max((len(s) for s in self.stop), default=1) - 1

    def generator(self) -> torch.Generator | None:
        if self.greedy:
            return None
        generator = torch.Generator()
        generator.manual_seed(self.seed if self.seed is not None else random.getrandbits(63))
        return generator


def next_tokens(
    logits: torch.Tensor, samplings: Sequence[Sampling], generators: Sequence[torch.Generator | None]
) -> list[int]:
    """One token per row of `logits` [rows, vocab], each by its own request's settings."""
    greedy = logits.argmax(dim=-1).tolist()
    chosen = []
    for row, (sampling, generator) in enumerate(zip(samplings, generators, strict=True)):
        if sampling.greedy:
            chosen.append(int(greedy[row]))
            continue
        probs = torch.softmax(logits[row].float() / sampling.temperature, dim=-1)
        if sampling.top_p < 1:
            sorted_probs, order = probs.sort(descending=True)
            outside = sorted_probs.cumsum(0) - sorted_probs >= sampling.top_p  # the smallest set reaching top_p
            outside[0] = False  # the likeliest token always stays: a top_p of 5e-324 is 0 in float32
            sorted_probs[outside] = 0
            chosen.append(int(order[torch.multinomial(sorted_probs, 1, generator=generator)]))
        else:
            chosen.append(int(torch.multinomial(probs, 1, generator=generator)))
    return chosen
