"""What a classification accuracy hides: per-class results, the prior baselines, a collapse check, calibration
and McNemar's test.

A tuned model that answers the majority label for almost every row can gain accuracy while it loses the task;
these statistics say so. Each is a plain function of gold labels, predicted labels (and, for calibration, the
probability of each prediction), tested against hand-computed values in `tests/unit/test_label_stats.py`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import binom, binomtest

from tunesmith.metrics.macro_f1 import f1

COLLAPSE_SHARE = 0.90  # one label predicted for at least this share of rows...
COLLAPSE_GOLD_SHARE = 0.75  # ...while its gold share is below this: a collapse
CALIBRATION_BINS = 10
OTHER = "(other)"  # answers off the label set, in confusion matrices


def confusion(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Counts with gold labels as rows and predictions as columns; an answer off the label set goes to `OTHER`."""
    columns = [*labels, *([OTHER] if any(p not in labels for p in predicted) else [])]
    index = {c: i for i, c in enumerate(columns)}
    matrix = [[0] * len(columns) for _ in labels]
    rows = {label: i for i, label in enumerate(labels)}
    for g, p in zip(gold, predicted, strict=True):
        if g in rows:
            matrix[rows[g]][index.get(p, len(columns) - 1)] += 1
    return {"gold": list(labels), "predicted": columns, "matrix": matrix}


def per_class(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1, support (gold rows) and predicted count of every label."""
    hits = Counter(g for g, p in zip(gold, predicted, strict=True) if g == p)
    n_gold, n_pred = Counter(gold), Counter(predicted)
    return [
        {
            "label": label,
            "precision": hits[label] / n_pred[label] if n_pred[label] else 0.0,
            "recall": hits[label] / n_gold[label] if n_gold[label] else 0.0,
            "f1": f1(hits[label], n_pred[label], n_gold[label]),
            "support": n_gold[label],
            "predicted": n_pred[label],
        }
        for label in labels
    ]


def distribution(values: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Share of each label among `values` (answers off the label set under `OTHER` when there are any)."""
    counts, n = Counter(values), max(len(values), 1)
    shares = {label: counts[label] / n for label in labels}
    off = sum(c for v, c in counts.items() if v not in shares)
    return shares | ({OTHER: off / n} if off else {})


def majority_label(train_targets: Sequence[str], labels: Sequence[str]) -> str:
    """The most frequent training label (ties: the first in label order)."""
    counts = Counter(t for t in train_targets if t in labels)
    return max(labels, key=lambda label: counts[label])


def stratified_expected_hits(gold: Sequence[str], prior: dict[str, float]) -> list[float]:
    """Per row, the probability that a label drawn from `prior` equals the gold label: their mean is the expected
    accuracy of a stratified random guesser, exactly."""
    return [prior.get(g, 0.0) for g in gold]


def stratified_expected_macro_f1(gold: Sequence[str], prior: dict[str, float], labels: Sequence[str]) -> float:
    """E[macro-F1] of labels drawn independently from `prior`, exactly: for label c with n_c gold rows, the true
    positives are Binomial(n_c, q_c) and the false positives Binomial(n - n_c, q_c), independent, and
    E[F1_c] = Σ P(tp)·P(fp)·2tp / (tp + fp + n_c); the macro average is the mean over labels (linearity)."""
    n, counts = len(gold), Counter(gold)
    expected = []
    for label in labels:
        q, n_c = prior.get(label, 0.0), counts[label]
        tp, fp = np.arange(n_c + 1)[:, None], np.arange(n - n_c + 1)[None, :]
        denominator = tp + fp + n_c
        ratio = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
        expected.append(float(binom.pmf(tp[:, 0], n_c, q) @ ratio @ binom.pmf(fp[0], n - n_c, q)))
    return float(np.mean(expected))


def collapse_warning(
    gold: Sequence[str],
    predicted: Sequence[str],
    reference: dict[str, float] | None = None,
    metrics: dict[str, float] | None = None,
) -> str | None:
    """One line when the predictions look collapsed onto one label, else None: that label predicted for ≥ 90% of
    rows while its gold share is < 75%, or accuracy up while macro-F1 down against `reference` (e.g. the base)."""
    if predicted:
        label, count = Counter(predicted).most_common(1)[0]
        share, gold_share = count / len(predicted), sum(g == label for g in gold) / max(len(gold), 1)
        if share >= COLLAPSE_SHARE and gold_share < COLLAPSE_GOLD_SHARE:
            return (
                f"possible collapse: {label!r} is predicted for {share:.0%} of rows but is {gold_share:.0%} of the "
                f"gold labels; compare with the majority baseline and macro-F1 before trusting the accuracy"
            )
    if reference and metrics and {"accuracy", "macro_f1"} <= reference.keys() & metrics.keys():
        if metrics["accuracy"] > reference["accuracy"] and metrics["macro_f1"] < reference["macro_f1"]:
            return (
                f"possible collapse: accuracy rose ({reference['accuracy']:.1%} → {metrics['accuracy']:.1%}) while "
                f"macro-F1 fell ({reference['macro_f1']:.1%} → {metrics['macro_f1']:.1%}): the model may favour the "
                f"frequent labels"
            )
    return None


def calibration(confidence: Sequence[float], correct: Sequence[bool], bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Expected calibration error over equal-width confidence bins (a confidence of exactly 1 falls in the last
    bin): Σ_b (n_b / n)·|accuracy_b − mean confidence_b|, and each bin for a reliability diagram."""
    conf, hit = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        count = int(inside.sum())
        entry = {"low": b / bins, "high": (b + 1) / bins, "count": count, "accuracy": None, "confidence": None}
        if count:
            entry["accuracy"], entry["confidence"] = float(hit[inside].mean()), float(conf[inside].mean())
            ece += count / len(conf) * abs(entry["accuracy"] - entry["confidence"])
        table.append(entry)
    return {"ece": ece if len(conf) else float("nan"), "bins": table}


def mcnemar(correct: Sequence[bool], reference_correct: Sequence[bool]) -> dict[str, float]:
    """McNemar's exact test on paired right/wrong outcomes: b = rows only `correct` gets right, c = rows only the
    reference gets right; two-sided p = min(1, 2·P(X ≤ min(b, c))) for X ~ Binomial(b + c, 1/2)."""
    b = sum(1 for x, y in zip(correct, reference_correct, strict=True) if x and not y)
    c = sum(1 for x, y in zip(correct, reference_correct, strict=True) if y and not x)
    p_value = binomtest(min(b, c), b + c, 0.5).pvalue if b + c else 1.0
    return {"only_this_right": b, "only_reference_right": c, "p_value": float(p_value)}


def label_summary(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Per-class results, confusion matrix and the predicted/gold label distributions of one system."""
    return {
        "per_class": per_class(gold, predicted, labels),
        "confusion": confusion(gold, predicted, labels),
        "predicted_distribution": distribution(predicted, labels),
        "gold_distribution": distribution(gold, labels),
    }
