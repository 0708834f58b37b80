"""Word swaps: exchange random words with their right-hand neighbour."""

from __future__ import annotations

import random

from tunesmith.augment.base import Augment, AugmentConfig, Augmenter, n_edits, per_text, split_words


def swap_words(text: str, rng: random.Random, rate: float) -> str | None:
    """`text` with about `rate` of its words swapped with the next word; None when no two neighbours differ."""
    parts = split_words(text)
    words = parts[1::2]
    places = [i for i in range(len(words) - 1) if words[i] != words[i + 1]]
    if not places:
        return None
    for i in sorted(rng.sample(places, n_edits(rate, len(places)))):
        words[i], words[i + 1] = words[i + 1], words[i]
    parts[1::2] = words
    result = "".join(parts)
    return result if result != text else None


def build(cfg: AugmentConfig) -> Augment:
    return per_text(lambda text, rng: swap_words(text, rng, cfg.swap_rate))


WORD_SWAP = Augmenter("word_swap", "swap random words with their right-hand neighbour", build)
