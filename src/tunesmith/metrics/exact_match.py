"""Exact match after normalisation: case, punctuation and runs of whitespace do not count."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def normalize_answer(text: str) -> str:
    """Lower-case, drop ASCII punctuation, collapse whitespace: "  The Cat!" and "the cat" are equal.

    Articles are kept (unlike SQuAD's normaliser): in short labels and extractions they carry meaning.
    """
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def exact_match(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """Share of predictions equal to their reference after `normalize_answer`; NaN when there is nothing."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} references but {len(predicted)} predictions")
    if not gold:
        return float("nan")
    return sum(normalize_answer(g) == normalize_answer(p) for g, p in zip(gold, predicted, strict=True)) / len(gold)
