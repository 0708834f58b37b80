"""Bootstrap intervals from per-row statistics: the point value is the metric itself, and 95% intervals cover
the true value about 95% of the time."""

from __future__ import annotations

import numpy as np
import pytest

from tunesmith.metrics import METRICS
from tunesmith.metrics.resampling import RESAMPLABLE, draws, interval, mean_interval, paired_interval, ratio_interval

pytestmark = pytest.mark.unit
LABELS = ["negative", "positive", "neutral"]


def _texts(seed: int, n: int = 40) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "Paris", "is", "big"]
    gold = [" ".join(rng.choice(words, size=rng.integers(1, 8))) for _ in range(n)]
    predicted = [g if rng.random() < 0.3 else " ".join(rng.choice(words, size=rng.integers(1, 8))) for g in gold]
    return gold, predicted


@pytest.mark.parametrize("metric", sorted(RESAMPLABLE))
def test_point_value_equals_the_metric(metric):
    if METRICS[metric].kind == "label":
        rng = np.random.default_rng(1)
        gold = list(rng.choice(LABELS, size=50))
        predicted = [
            g if rng.random() < 0.6 else "other answer" if rng.random() < 0.2 else rng.choice(LABELS) for g in gold
        ]
        labels = LABELS
    else:
        (gold, predicted), labels = _texts(2), None
    found = interval(metric, gold, predicted, labels)
    assert found.value == pytest.approx(METRICS[metric](gold, predicted, labels=labels), abs=1e-9)
    assert found.low <= found.value <= found.high and found.n == len(gold)


def test_draws_are_seeded_and_sum_to_n():
    a, b = draws(30, 200, seed=3), draws(30, 200, seed=3)
    assert np.array_equal(a, b) and a.shape == (200, 30) and (a.sum(1) == 30).all()
    assert not np.array_equal(a, draws(30, 200, seed=4))


def test_paired_interval_of_a_system_with_itself_is_zero():
    gold = ["a", "b"] * 20
    predicted = ["a"] * 40
    found = paired_interval("accuracy", gold, predicted, predicted)
    assert (found.value, found.low, found.high) == (0.0, 0.0, 0.0) and not found.excludes_zero()
    better = paired_interval("accuracy", gold, gold, predicted)
    assert better.value == pytest.approx(0.5) and better.excludes_zero()


def test_accuracy_intervals_cover_the_true_value():
    """200 simulated test sets of 200 rows from a classifier that is right 70% of the time."""
    covered = 0
    for seed in range(200):
        rng = np.random.default_rng(1000 + seed)
        gold = list(rng.choice(["a", "b"], size=200))
        predicted = [g if rng.random() < 0.7 else ("b" if g == "a" else "a") for g in gold]
        found = interval("accuracy", gold, predicted, ["a", "b"], draws(200, 1000, seed))
        covered += found.low <= 0.7 <= found.high
    assert covered >= 186, f"covered {covered} of 200"  # at least 93%


def test_macro_f1_intervals_cover_the_population_value():
    """Rows drawn from a known joint distribution of (gold, predicted): the population macro-F1 is
    mean over labels of 2·p(c, c) / (p(gold = c) + p(predicted = c))."""
    joint = {("a", "a"): 0.45, ("a", "b"): 0.15, ("b", "a"): 0.10, ("b", "b"): 0.30}
    truth = np.mean(
        [
            2
            * joint[(c, c)]
            / (sum(p for (g, _), p in joint.items() if g == c) + sum(p for (_, q), p in joint.items() if q == c))
            for c in ("a", "b")
        ]
    )
    cells, probs = list(joint), list(joint.values())
    covered = 0
    for seed in range(200):
        picked = np.random.default_rng(5000 + seed).choice(len(cells), size=300, p=probs)
        gold, predicted = [cells[i][0] for i in picked], [cells[i][1] for i in picked]
        found = interval("macro_f1", gold, predicted, ["a", "b"], draws(300, 1000, seed))
        covered += found.low <= truth <= found.high
    assert covered >= 186, f"covered {covered} of 200"


def test_mean_interval_of_expected_hits():
    found = mean_interval([0.5] * 10 + [0.25] * 10)
    assert found.value == pytest.approx(0.375) and found.low < 0.375 < found.high


def test_ratio_interval_is_loss_per_token_and_perplexity():
    losses, tokens = [2.0, 6.0, 3.0, 1.0], [1, 3, 2, 2]
    loss = ratio_interval(losses, tokens)
    assert loss.value == pytest.approx(12 / 8) and loss.low <= 1.5 <= loss.high
    perplexity = ratio_interval(losses, tokens, transform=np.exp)
    assert perplexity.value == pytest.approx(np.exp(1.5)) and perplexity.low == pytest.approx(np.exp(loss.low))
