"""Seeded percentile bootstrap of a mean and of a paired difference of means, as the bias audit reports them
(`mean`, `low`, `high`, `n`); the resampling itself is `metrics.resampling`, shared with `tunesmith eval`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from tunesmith.metrics.resampling import draws, mean_interval


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap (1 - alpha) percentile interval."""

    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def bootstrap_mean(values: Sequence[float], samples: int = 1000, seed: int = 0, alpha: float = 0.05) -> Interval:
    """Mean of `values` with its percentile bootstrap interval (`metrics.resampling`); NaNs for no values."""
    if len(values) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    found = mean_interval(values, draws(len(values), samples, seed), alpha)
    return Interval(found.value, found.low, found.high, found.n)


def paired_difference(
    tuned: Sequence[float], base: Sequence[float], samples: int = 1000, seed: int = 0, alpha: float = 0.05
) -> Interval:
    """mean(tuned) - mean(base) on the same items, resampling items jointly (the pairing keeps the CI tight)."""
    t, b = np.asarray(tuned, dtype=np.float64), np.asarray(base, dtype=np.float64)
    if t.shape != b.shape:
        raise ValueError(f"paired values differ in shape: {t.shape} vs {b.shape}")
    return bootstrap_mean(t - b, samples, seed, alpha)
