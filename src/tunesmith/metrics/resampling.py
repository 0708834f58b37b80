"""Bootstrap intervals for every evaluation metric, from per-row sufficient statistics.

A metric here is a pair: `row_stats(gold, predicted, labels) -> [n, d]` (what each row contributes) and
`from_stats(summed [..., d]) -> value` (the metric of a set of rows from their summed statistics). A bootstrap
resample is then a vector of draw counts per row, and all resamples at once are one matrix product
(`draws @ stats`): accuracy and exact match sum 0/1 hits, ROUGE-L sums sentence F1s, macro-F1 sums one-hot
confusion cells, BLEU and chrF sum sacrebleu's own n-gram statistics (what its paired bootstrap resamples). The
point value (every row drawn once) equals the metric itself (tested), so an interval always brackets the number
it is printed beside.

Resamples are seeded (`eval.seed`-style: same rows, same intervals) and the same draws serve every system, so a
paired difference resamples rows jointly: the pairing is what keeps the interval of tuned − base tight.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from tunesmith.metrics.exact_match import normalize_answer
from tunesmith.metrics.rouge_l import rouge_l_f1

DEFAULT_SAMPLES = 1000


@dataclass(frozen=True)
class Interval:
    """A value, its (1 - alpha) percentile bootstrap interval, and the rows behind it."""

    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def draws(n: int, samples: int = DEFAULT_SAMPLES, seed: int = 0) -> np.ndarray:
    """[samples, n] counts: how often each of n rows is drawn in each resample (n draws with replacement)."""
    picked = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    return np.stack([np.bincount(row, minlength=n) for row in picked]).astype(np.float64)


def _mean_stats(values: Sequence[float]) -> np.ndarray:
    return np.column_stack([np.asarray(values, dtype=np.float64), np.ones(len(values))])


def _mean(summed: np.ndarray) -> np.ndarray:
    return summed[..., 0] / summed[..., 1]


def _hits(gold: Sequence[Hashable], predicted: Sequence[Hashable]) -> np.ndarray:
    return _mean_stats([float(g == p) for g, p in zip(gold, predicted, strict=True)])


def _normalised_hits(gold: Sequence[Hashable], predicted: Sequence[Hashable]) -> np.ndarray:
    pairs = zip(gold, predicted, strict=True)
    return _mean_stats([float(normalize_answer(str(g)) == normalize_answer(str(p))) for g, p in pairs])


def _rouge(gold: Sequence[Hashable], predicted: Sequence[Hashable]) -> np.ndarray:
    return _mean_stats([rouge_l_f1(str(g), str(p)) for g, p in zip(gold, predicted, strict=True)])


@dataclass(frozen=True)
class ConfusionStats:
    """Macro-F1 from confusion cells: row statistics are one-hot (gold, predicted) cells over the label set plus
    one "other" class (answers off the set); F1 averages over `chosen` labels as `macro_f1` does."""

    classes: list[Hashable]
    chosen: list[int]

    @classmethod
    def of(cls, gold: Sequence[Hashable], predicted: Sequence[Hashable], labels: Sequence[Hashable] | None):
        chosen = list(labels) if labels is not None else sorted(set(gold) | set(predicted), key=str)
        return cls([*chosen, None], list(range(len(chosen))))

    def row_stats(self, gold: Sequence[Hashable], predicted: Sequence[Hashable]) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes[:-1])}
        k = len(self.classes)
        cells = [index.get(g, k - 1) * k + index.get(p, k - 1) for g, p in zip(gold, predicted, strict=True)]
        return np.eye(k * k)[cells]

    def from_stats(self, summed: np.ndarray) -> np.ndarray:
        k = len(self.classes)
        matrix = summed.reshape(*summed.shape[:-1], k, k)
        hits = np.diagonal(matrix, axis1=-2, axis2=-1)
        actual, guessed = matrix.sum(-1), matrix.sum(-2)
        both = guessed + actual  # F1 = 2·TP / (predicted + actual), 0 where the label is neither (as `f1`)
        scores = np.where(both > 0, 2 * hits / np.maximum(both, 1), 0.0)
        return scores[..., self.chosen].mean(-1)


def _macro_f1(gold, predicted, labels):  # noqa: ANN001, ANN202 - the RESAMPLABLE signature
    confusion = ConfusionStats.of(gold, predicted, labels)
    return confusion.row_stats(gold, predicted), confusion.from_stats


def _sacrebleu(name: str) -> Callable:
    def stats(gold, predicted, labels=None):  # noqa: ANN001, ANN202 - the RESAMPLABLE signature
        import sacrebleu

        metric = sacrebleu.BLEU() if name == "bleu" else sacrebleu.CHRF()
        rows = np.asarray(metric._extract_corpus_statistics(list(predicted), [list(gold)]), dtype=np.float64)

        def score(summed: np.ndarray) -> np.ndarray:
            flat = summed.reshape(-1, summed.shape[-1])
            values = [metric._compute_score_from_stats(list(s)).score for s in flat]
            return np.asarray(values).reshape(summed.shape[:-1])

        return rows, score

    return stats


def _fixed(row_stats: Callable[[Sequence[Hashable], Sequence[Hashable]], np.ndarray]) -> Callable:
    def stats(gold, predicted, labels=None):  # noqa: ANN001, ANN202 - the RESAMPLABLE signature
        return row_stats(gold, predicted), _mean

    return stats


# metric name -> (gold, predicted, labels) -> (row statistics [n, d], summed statistics -> metric value)
RESAMPLABLE: dict[str, Callable] = {
    "accuracy": _fixed(_hits),
    "exact_match": _fixed(_normalised_hits),
    "rouge_l": _fixed(_rouge),
    "macro_f1": _macro_f1,
    "bleu": _sacrebleu("bleu"),
    "chrf": _sacrebleu("chrf"),
}


def _bootstrap(
    score: Callable[[np.ndarray], np.ndarray],
    stats: np.ndarray,
    reference: np.ndarray | None = None,
    counts: np.ndarray | None = None,
    alpha: float = 0.05,
) -> Interval:
    """score(summed row statistics) on all rows (each drawn once) and its percentile interval over the resamples
    in `counts`; with `reference`, the difference score(stats) − score(reference) under the same draws."""

    def at(weights: np.ndarray) -> np.ndarray:
        value = score(weights @ stats)
        return value if reference is None else value - score(weights @ reference)

    counts = draws(len(stats)) if counts is None else counts
    low, high = np.nanquantile(at(counts), [alpha / 2, 1 - alpha / 2])
    return Interval(float(at(np.ones(len(stats)))), float(low), float(high), len(stats))


def interval(
    metric: str,
    gold: Sequence[Hashable],
    predicted: Sequence[Hashable],
    labels: Sequence[Hashable] | None = None,
    counts: np.ndarray | None = None,
    alpha: float = 0.05,
) -> Interval | None:
    """The metric on these rows with its bootstrap interval; None for a metric without row statistics or no rows."""
    if metric not in RESAMPLABLE or not gold:
        return None
    stats, score = RESAMPLABLE[metric](gold, predicted, labels)
    return _bootstrap(score, stats, counts=counts, alpha=alpha)


def paired_interval(
    metric: str,
    gold: Sequence[Hashable],
    predicted: Sequence[Hashable],
    reference: Sequence[Hashable],
    labels: Sequence[Hashable] | None = None,
    counts: np.ndarray | None = None,
    alpha: float = 0.05,
) -> Interval | None:
    """metric(predicted) − metric(reference) on the same rows, both resampled with the same draws."""
    if metric not in RESAMPLABLE or not gold:
        return None
    make = RESAMPLABLE[metric]
    if metric == "macro_f1":  # one label set for both systems, as a paired comparison needs
        both = ConfusionStats.of([*gold, *gold], [*predicted, *reference], labels)
        mine, theirs, score = both.row_stats(gold, predicted), both.row_stats(gold, reference), both.from_stats
    else:
        (mine, score), (theirs, _) = make(gold, predicted, labels), make(gold, reference, labels)
    return _bootstrap(score, mine, theirs, counts, alpha)


def mean_interval(values: Sequence[float], counts: np.ndarray | None = None, alpha: float = 0.05) -> Interval:
    """The mean of per-row values (e.g. a prior's expected hit per row) with its bootstrap interval."""
    return _bootstrap(_mean, _mean_stats(values), counts=counts, alpha=alpha)


def ratio_interval(
    numerators: Sequence[float],
    denominators: Sequence[float],
    counts: np.ndarray | None = None,
    alpha: float = 0.05,
    transform: Callable[[np.ndarray], np.ndarray] = np.asarray,
) -> Interval:
    """transform(Σ numerator / Σ denominator) over rows with its bootstrap interval: the validation loss per
    token (summed loss / tokens) and, with `transform=np.exp`, the perplexity."""
    stats = np.column_stack([np.asarray(numerators, dtype=np.float64), np.asarray(denominators, dtype=np.float64)])
    return _bootstrap(lambda summed: transform(_mean(summed)), stats, counts=counts, alpha=alpha)
