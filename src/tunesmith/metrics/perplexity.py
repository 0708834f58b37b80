"""Perplexity: exp of the mean negative log-likelihood per scored token, pooled over examples."""

from __future__ import annotations

import math
from collections.abc import Sequence

MAX_LOG = 50.0  # exp(50) ≈ 5e21: beyond it the number says only "diverged", so it is reported as inf


def perplexity(token_counts: Sequence[int], nll_sums: Sequence[float]) -> float:
    """exp(Σ nll / Σ tokens) for per-example token counts and summed NLLs (nats); NaN with no token."""
    if len(token_counts) != len(nll_sums):
        raise ValueError(f"{len(token_counts)} token counts but {len(nll_sums)} NLL sums")
    tokens = sum(token_counts)
    if not tokens:
        return float("nan")
    mean = sum(nll_sums) / tokens
    return math.exp(mean) if mean < MAX_LOG else float("inf")
