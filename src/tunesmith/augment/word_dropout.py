"""Word dropout: delete random words, keeping at least one."""

from __future__ import annotations

import random

from tunesmith.augment.base import Augment, AugmentConfig, Augmenter, join_kept, per_text, split_words


def drop_words(text: str, rng: random.Random, rate: float) -> str | None:
    """`text` with each word dropped with probability `rate` (at least one dropped); None for one-word texts."""
    parts = split_words(text)
    n = len(parts) // 2
    if n < 2:
        return None
    keep = [rng.random() >= rate for _ in range(n)]
    if all(keep):
        keep[rng.randrange(n)] = False
    if not any(keep):
        keep[rng.randrange(n)] = True
    return join_kept(parts, keep)


def build(cfg: AugmentConfig) -> Augment:
    return per_text(lambda text, rng: drop_words(text, rng, cfg.dropout_rate))


WORD_DROPOUT = Augmenter("word_dropout", "delete random words (at least one, never all)", build)
