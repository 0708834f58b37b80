"""Corpus BLEU and chrF from sacrebleu (default settings: 13a tokenisation, exponential smoothing; chrF with
character 6-grams and beta 2), on sacrebleu's own 0–100 scale so numbers compare with published ones."""

from __future__ import annotations

from collections.abc import Sequence


def _check(gold: Sequence[str], predicted: Sequence[str]) -> bool:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} references but {len(predicted)} predictions")
    return bool(gold)


def bleu(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """Corpus BLEU (0–100) with one reference per prediction; NaN when there is nothing to score."""
    import sacrebleu  # imported here: configs validate metric names without loading it

    return sacrebleu.corpus_bleu(list(predicted), [list(gold)]).score if _check(gold, predicted) else float("nan")


def chrf(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """Corpus chrF (0–100) with one reference per prediction; NaN when there is nothing to score."""
    import sacrebleu

    return sacrebleu.corpus_chrf(list(predicted), [list(gold)]).score if _check(gold, predicted) else float("nan")
