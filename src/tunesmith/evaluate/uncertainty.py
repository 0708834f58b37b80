"""The statistics `tunesmith eval` adds to its systems so that a headline number cannot mislead.

- **Prior baselines** beside the base model: `majority` (always the most frequent training label) and
  `stratified random` (labels drawn at the training distribution; its accuracy and macro-F1 are expectations
  computed exactly, so no sampling noise). They count as bases in "tuned − best base".
- **Intervals**: a 95% bootstrap interval for every resamplable metric of every system and scoring
  (`metrics.resampling`, `eval.bootstrap` resamples seeded by `run.seed`; the same draws for all systems).
- **Tuned against each base**: a paired bootstrap interval of the difference per metric, and McNemar's exact
  test for accuracy; a difference whose interval holds 0 is "not significant".
- **Per-class results, confusion matrix, label distributions, calibration** (ECE and reliability bins of the
  label-likelihood probabilities) for label-scored systems, and a **collapse warning** for the tuned model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from tunesmith.evaluate.label_stats import (
    calibration,
    collapse_warning,
    label_summary,
    majority_label,
    mcnemar,
    stratified_expected_hits,
    stratified_expected_macro_f1,
)
from tunesmith.evaluate.scoring import EvalPlan, as_label
from tunesmith.metrics import METRICS, normalize_answer
from tunesmith.metrics.resampling import (
    RESAMPLABLE,
    draws,
    interval,
    mean_interval,
    paired_interval,
    ratio_interval,
)

HOWS = ("label_likelihood", "generation")


def prior_systems(gold: list[str], train_targets: Sequence[str], labels: list[str]) -> list[dict[str, Any]]:
    """The majority and stratified-random baselines of label rows, from the training label distribution."""
    counts = Counter(t for t in train_targets if t in labels)
    total = sum(counts.values())
    if not total:
        return []
    prior = {label: counts[label] / total for label in labels}
    majority = majority_label(train_targets, labels)
    expected = stratified_expected_hits(gold, prior)
    return [
        {"name": "majority", "model": "prior", "label": majority, "prior": {"predicted": [majority] * len(gold)}},
        {
            "name": "stratified random",
            "model": "prior",
            "distribution": prior,
            "prior": {
                "metrics": {
                    "accuracy": float(np.mean(expected)) if expected else float("nan"),
                    "macro_f1": stratified_expected_macro_f1(gold, prior, labels),
                },
                "expected_hits": expected,
                "expected": True,
            },
        },
    ]


def _label_metrics(plan: EvalPlan) -> list[str]:
    return [m for m in plan.metrics if METRICS[m].kind == "label"]


def scored_rows(system: dict[str, Any], how: str, gold: list[str], plan: EvalPlan) -> dict[str, list[str]] | None:
    """The gold and predicted values a scoring's metrics were computed from: by metric kind, a (gold, predicted)
    pair; None when the system does not keep its rows (a report from before they were kept)."""
    entry = system.get(how) or {}
    if how == "label_likelihood" or how == "prior":
        predicted = entry.get("predicted")
        return {"label": (gold, predicted)} if predicted and len(predicted) == len(gold) else None
    answers = [p["answer"] for p in system.get("predictions", [])]
    if not answers:
        return None
    rows_gold = gold[: len(answers)]
    if plan.labels is not None:
        labelled = [as_label(a, plan.labels) for a in answers]
    else:  # no label set: label metrics compare normalised answers, as `generation_metrics` does
        labelled, rows_gold_norm = [normalize_answer(a) for a in answers], [normalize_answer(g) for g in rows_gold]
        return {"label": (rows_gold_norm, labelled), "text": (rows_gold, answers)}
    return {"label": (rows_gold, labelled), "text": (rows_gold, answers)}


class Draws:
    """Seeded bootstrap draw counts per number of rows: every system scored on the same rows gets the same draws,
    which is what pairs them."""

    def __init__(self, samples: int, seed: int) -> None:
        self.samples, self.seed, self._made = samples, seed, {}

    def __call__(self, n: int) -> np.ndarray:
        if n not in self._made:
            self._made[n] = draws(n, self.samples, self.seed)
        return self._made[n]


def _intervals(entry: dict[str, Any], rows: dict[str, tuple], plan: EvalPlan, counts: Draws) -> None:
    out = {}
    for metric in entry.get("metrics", {}):
        kind = METRICS[metric].kind if metric in METRICS else None
        if metric in RESAMPLABLE and kind in rows:
            gold, predicted = rows[kind]
            found = interval(metric, gold, predicted, plan.labels, counts(len(gold)))
            if found is not None:
                out[metric] = [found.low, found.high]
    entry["intervals"] = out


def _label_details(entry: dict[str, Any], gold: list[str], predicted: list[str], labels: list[str]) -> None:
    entry |= label_summary(gold, predicted, labels)
    confidence = entry.get("confidence")
    if confidence:
        entry["calibration"] = calibration(confidence, [g == p for g, p in zip(gold, predicted, strict=True)])


def _versus(
    tuned: dict[str, Any],
    mine: dict[str, tuple] | None,
    base: dict[str, Any],
    how: str,
    gold: list[str],
    plan: EvalPlan,
    counts: Draws,
) -> dict[str, Any]:
    """tuned − base per metric of one scoring (paired bootstrap), plus McNemar for accuracy; `mine` is the tuned
    system's `scored_rows` for that scoring."""
    is_prior = base.get("model") == "prior"
    theirs = scored_rows(base, "prior" if is_prior else how, gold, plan)
    if mine is None or (is_prior and how != "label_likelihood"):
        return {}
    if base.get("prior", {}).get("expected"):  # stratified: per-row expected hits, accuracy only
        hits = [float(g == p) for g, p in zip(*mine["label"], strict=True)]
        diff = np.subtract(hits, base["prior"]["expected_hits"]).tolist()
        return {"accuracy": _difference(mean_interval(diff, counts(len(diff))))}
    out: dict[str, Any] = {}
    for metric in tuned.get(how, {}).get("metrics", {}):
        kind = METRICS[metric].kind if metric in METRICS else None
        if theirs is None or metric not in RESAMPLABLE or kind not in mine or kind not in theirs:
            continue
        (gold_rows, predicted), reference = mine[kind], theirs[kind][1]
        if len(reference) == len(predicted):
            found = paired_interval(metric, gold_rows, predicted, reference, plan.labels, counts(len(gold_rows)))
            out[metric] = _difference(found)
    if "accuracy" in out and theirs is not None:
        gold_rows, predicted = mine["label"]
        out["accuracy"]["mcnemar"] = mcnemar(
            [g == p for g, p in zip(gold_rows, predicted, strict=True)],
            [g == p for g, p in zip(gold_rows, theirs["label"][1], strict=True)],
        )
    return out


def _difference(found: Any) -> dict[str, Any]:
    return {"difference": found.value, "low": found.low, "high": found.high, "significant": found.excludes_zero()}


def add_statistics(
    report: dict[str, Any], gold: list[str], train_targets: Sequence[str], plan: EvalPlan, samples: int, seed: int
) -> None:
    """Add priors, intervals, per-class details, calibration, tuned-vs-base differences and the collapse
    warning to an eval report (in place). `samples` 0: no intervals or differences."""
    systems = report["systems"]
    if plan.labels is not None and plan.scoring == "label_likelihood":
        priors = prior_systems(gold, train_targets, plan.labels)
        systems[-1:-1] = priors
        if priors:
            report["prior_baselines"] = {
                "majority_label": priors[0]["label"],
                "distribution": priors[1]["distribution"],
            }
    counts = Draws(samples, seed) if samples else None
    for system in systems:
        _describe(system, gold, plan, counts)
    tuned = systems[-1]
    if counts is not None:
        tuned["versus"] = {}
        for how in (h for h in HOWS if h in tuned):
            mine = scored_rows(tuned, how, gold, plan)
            tuned["versus"][how] = {b["name"]: _versus(tuned, mine, b, how, gold, plan, counts) for b in systems[:-1]}
    report["collapse_warning"] = _collapse(systems, gold, plan)


def _describe(system: dict[str, Any], gold: list[str], plan: EvalPlan, counts: Draws | None) -> None:
    """One system's intervals and label details, per scoring."""
    for how in (*HOWS, "prior"):
        entry, rows = system.get(how), scored_rows(system, how, gold, plan)
        if not isinstance(entry, dict) or rows is None:
            continue
        if "metrics" not in entry:  # the majority baseline: its metrics from its predictions
            entry["metrics"] = {m: METRICS[m](*rows["label"], labels=plan.labels) for m in _label_metrics(plan)}
        if counts is not None:
            _intervals(entry, rows, plan, counts)
        if plan.labels is not None and how != "generation":
            _label_details(entry, *rows["label"], plan.labels)
    if system.get("row_losses") and counts is not None:  # loss read off the label scores: per-row sums
        losses, tokens = zip(*system["row_losses"], strict=True)
        loss = ratio_interval(losses, tokens, counts(len(losses)))
        perplexity = ratio_interval(losses, tokens, counts(len(losses)), transform=np.exp)
        system["loss_intervals"] = {"loss": [loss.low, loss.high], "perplexity": [perplexity.low, perplexity.high]}
    prior = system.get("prior", {})
    if prior:
        system["metrics"] = prior["metrics"]  # a prior's headline numbers, as other systems carry theirs
    if prior.get("expected") and counts is not None:
        found = mean_interval(prior["expected_hits"], counts(len(prior["expected_hits"])))
        prior["intervals"] = {"accuracy": [found.low, found.high]}


def _collapse(systems: list[dict[str, Any]], gold: list[str], plan: EvalPlan) -> str | None:
    tuned, base = systems[-1], next((s for s in systems if s.get("name") == "base 0-shot"), None)
    rows = scored_rows(tuned, plan.scoring, gold, plan)
    if rows is None or "label" not in rows:
        return None
    reference = (base or {}).get(plan.scoring, {}).get("metrics")
    return collapse_warning(*rows["label"], reference, tuned.get(plan.scoring, {}).get("metrics"))
