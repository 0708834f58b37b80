"""Accuracy: the share of predictions equal to the gold label."""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def accuracy(gold: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Fraction of positions where `predicted` equals `gold`; NaN when there is nothing to score."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    if not gold:
        return float("nan")
    return sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)
