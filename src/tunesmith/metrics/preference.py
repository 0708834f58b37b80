"""Preference metrics over pairs: `gold` holds each pair's chosen-answer score, `predicted` its rejected-answer
score (an implicit reward β·log(π/π_ref), or a log-probability).

- `reward_accuracy`: the share of pairs whose chosen answer scores higher;
- `reward_margin`: the mean of chosen minus rejected.
"""

from __future__ import annotations

from collections.abc import Sequence


def reward_accuracy(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    pairs = list(zip(chosen, rejected, strict=True))
    return sum(c > r for c, r in pairs) / len(pairs) if pairs else float("nan")


def reward_margin(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    pairs = list(zip(chosen, rejected, strict=True))
    return sum(c - r for c, r in pairs) / len(pairs) if pairs else float("nan")
