"""Seeded percentile bootstrap: confidence intervals of a mean, and of a paired difference of means."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


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


def _resampled_means(values: np.ndarray, samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(samples, len(values)))
    return values[idx].mean(axis=1)


def bootstrap_mean(values: Sequence[float], samples: int = 1000, seed: int = 0, alpha: float = 0.05) -> Interval:
    """Mean of `values` with its percentile bootstrap interval; NaNs for no values."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    means = _resampled_means(arr, samples, seed)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(arr.mean()), float(low), float(high), int(arr.size))


def paired_difference(
    tuned: Sequence[float], base: Sequence[float], samples: int = 1000, seed: int = 0, alpha: float = 0.05
) -> Interval:
    """mean(tuned) - mean(base) on the same items, resampling items jointly (the pairing keeps the CI tight)."""
    t, b = np.asarray(tuned, dtype=np.float64), np.asarray(base, dtype=np.float64)
    if t.shape != b.shape:
        raise ValueError(f"paired values differ in shape: {t.shape} vs {b.shape}")
    return bootstrap_mean(t - b, samples, seed, alpha)
