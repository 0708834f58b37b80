"""Macro-F1: the unweighted mean of per-label F1, so a rare label counts as much as a frequent one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence


def f1(true_positives: int, predicted: int, actual: int) -> float:
    """F1 from counts: 2·TP / (predicted + actual); 0 when the label was neither predicted nor present."""
    return 2 * true_positives / (predicted + actual) if predicted + actual else 0.0


def macro_f1(
    gold: Sequence[Hashable], predicted: Sequence[Hashable], labels: Sequence[Hashable] | None = None
) -> float:
    """Mean F1 over every label seen in `gold` or `predicted` (as scikit-learn's average="macro" does), or over
    `labels` only (scikit-learn's `labels=`): generated answers off the label set then count as wrong without
    each adding a class of its own."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    if not gold:
        return float("nan")
    hits = Counter(g for g, p in zip(gold, predicted, strict=True) if g == p)
    n_gold, n_pred = Counter(gold), Counter(predicted)
    chosen = set(labels) if labels is not None else n_gold.keys() | n_pred.keys()
    return sum(f1(hits[label], n_pred[label], n_gold[label]) for label in chosen) / len(chosen)
