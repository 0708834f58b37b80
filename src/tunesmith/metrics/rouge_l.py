"""ROUGE-L: F1 of the longest common subsequence of words, averaged over examples.

Tokens are lower-cased runs of letters and digits, as Google's `rouge_score` reads them without stemming, so
scores match its `rougeL` F-measure. Written out here because the whole metric is one dynamic programme.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a)·len(b)) time, O(len(b)) memory)."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l_f1(reference: str, prediction: str) -> float:
    """2PR / (P + R) with P = LCS / |prediction| and R = LCS / |reference|; 0 when either is empty."""
    ref, pred = tokens(reference), tokens(prediction)
    lcs = lcs_length(ref, pred)
    if not lcs:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """Mean sentence-level ROUGE-L F1; NaN when there is nothing to score."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} references but {len(predicted)} predictions")
    if not gold:
        return float("nan")
    return sum(rouge_l_f1(g, p) for g, p in zip(gold, predicted, strict=True)) / len(gold)
