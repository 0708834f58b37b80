"""What an augmentation method is, its settings, and the word helpers the noise methods share.

A method turns input texts into new input texts. It never sees the label or output: the caller picks which
fields of a row are inputs (`augment.fields`) and hands only those to the method.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# texts, one seeded RNG per text, variant index (0..per_row-1) -> one new text per input; None: no change possible.
Augment = Callable[[Sequence[str], Sequence[random.Random], int], list[str | None]]


@dataclass(frozen=True)
class AugmentConfig:
    """Settings of `tunesmith data augment`.

    Attributes:
        seed: every variant is drawn from an RNG seeded by (seed, method, source line, variant), so a row's
            variants do not depend on the other rows or on the order of methods.
        per_row: variants per source row and method.
        typo_rate: share of letters edited by `typos` (at least one edit).
        dropout_rate: probability that `word_dropout` drops a word (at least one dropped, one kept).
        swap_rate: share of words that `word_swap` swaps with their right neighbour (at least one swap).
        synonym_rate: share of lexicon words that `synonyms` replaces (at least one).
        model: model that writes paraphrases: catalog name, Hub id, local folder or run folder.
        batch_size: paraphrase generation batch size.
        max_new_tokens: paraphrase length cap; default: twice the longest input's token count plus 16, at most 256.
    """

    seed: int = 0
    per_row: int = 1
    typo_rate: float = 0.05
    dropout_rate: float = 0.1
    swap_rate: float = 0.1
    synonym_rate: float = 0.5
    model: str = "smollm2-135m"
    batch_size: int = 16
    max_new_tokens: int | None = None


@dataclass(frozen=True)
class Augmenter:
    """A named augmentation: `build(config)` returns the function that rewrites texts (loading a model lazily)."""

    name: str
    help: str
    build: Callable[[AugmentConfig], Augment]


def per_text(rewrite: Callable[[str, random.Random], str | None]) -> Augment:
    """Lift a one-text rewrite to the batched `Augment` signature (the noise methods need no batching)."""

    def apply(texts: Sequence[str], rngs: Sequence[random.Random], variant: int) -> list[str | None]:
        return [rewrite(text, rng) for text, rng in zip(texts, rngs, strict=True)]

    return apply


def split_words(text: str) -> list[str]:
    """`[space, word, space, word, ..., space]`: words are runs of non-space; joining gives back `text`."""
    return re.split(r"(\S+)", text)


def join_kept(parts: list[str], keep: Sequence[bool]) -> str:
    """Rebuild text from `split_words` parts keeping only some words; each kept word keeps the space before it,
    so line breaks between kept words survive."""
    words = parts[1::2]
    kept = [i for i, flag in enumerate(keep) if flag]
    if not kept:
        return ""
    pieces = [parts[0], words[kept[0]]]
    for i in kept[1:]:
        pieces += [parts[2 * i], words[i]]
    pieces.append(parts[-1])
    return "".join(pieces)


def n_edits(rate: float, available: int) -> int:
    """How many of `available` places to edit: `rate` of them, at least one (so a variant always differs)."""
    return max(1, min(available, round(rate * available)))
