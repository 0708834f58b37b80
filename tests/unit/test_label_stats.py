"""The statistics behind an honest classification report, each against values computed by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tunesmith.evaluate.label_stats import (
    OTHER,
    calibration,
    collapse_warning,
    confusion,
    majority_label,
    mcnemar,
    per_class,
    stratified_expected_hits,
    stratified_expected_macro_f1,
)
from tunesmith.metrics import macro_f1

pytestmark = pytest.mark.unit
GOLD = ["a", "a", "b", "b", "c"]
PREDICTED = ["a", "b", "b", "b", "banana"]  # the last answer is off the label set
LABELS = ["a", "b", "c"]


def test_confusion_matrix_has_an_other_column_for_answers_off_the_label_set():
    found = confusion(GOLD, PREDICTED, LABELS)
    assert found["predicted"] == ["a", "b", "c", OTHER]
    assert found["matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 1]]
    assert confusion(GOLD, GOLD, LABELS)["predicted"] == LABELS  # no column when nothing is off the set


def test_per_class_precision_recall_f1_support():
    rows = {r["label"]: r for r in per_class(GOLD, PREDICTED, LABELS)}
    assert rows["a"] == pytest.approx(
        {"label": "a", "precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2, "predicted": 1}
    )
    assert rows["b"]["precision"] == pytest.approx(2 / 3) and rows["b"]["recall"] == 1.0 and rows["b"]["f1"] == 0.8
    assert rows["c"] == pytest.approx(
        {"label": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}
    )
    assert np.mean([r["f1"] for r in rows.values()]) == pytest.approx(macro_f1(GOLD, PREDICTED, LABELS))


def test_mcnemar_exact_on_a_known_table():
    # 10 rows only the model gets right, 2 only the reference: p = 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * 79 / 4096
    mine = [True] * 10 + [False] * 2 + [True] * 30 + [False] * 5
    theirs = [False] * 10 + [True] * 2 + [True] * 30 + [False] * 5
    found = mcnemar(mine, theirs)
    assert found["only_this_right"] == 10 and found["only_reference_right"] == 2
    assert found["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0  # no discordant pairs


def test_expected_calibration_error_on_known_bins():
    found = calibration([0.95, 0.95, 0.55, 0.55, 1.0], [True, False, True, True, True])
    # bin 9 holds 0.95, 0.95, 1.0 (accuracy 2/3, confidence 0.9667); bin 5 holds 0.55, 0.55 (accuracy 1)
    expected = 3 / 5 * abs(2 / 3 - (0.95 + 0.95 + 1.0) / 3) + 2 / 5 * abs(1 - 0.55)
    assert found["ece"] == pytest.approx(expected)
    assert [b["count"] for b in found["bins"]] == [0, 0, 0, 0, 0, 2, 0, 0, 0, 3]


def test_stratified_random_expectations_match_enumeration():
    gold = ["a", "a", "a", "b", "c"]
    prior = {"a": 0.6, "b": 0.3, "c": 0.1}
    labels = ["a", "b", "c"]
    assert np.mean(stratified_expected_hits(gold, prior)) == pytest.approx((3 * 0.6 + 0.3 + 0.1) / 5)
    exhaustive = sum(
        np.prod([prior[p] for p in guess]) * macro_f1(gold, list(guess), labels)
        for guess in itertools.product(labels, repeat=len(gold))
    )
    assert stratified_expected_macro_f1(gold, prior, labels) == pytest.approx(exhaustive)


def test_majority_label_is_the_most_frequent_training_label():
    assert majority_label(["b", "a", "b", "x"], ["a", "b"]) == "b"
    assert majority_label(["a", "b"], ["a", "b"]) == "a"  # a tie: label order


def test_collapse_warning_fires_on_an_always_majority_predictor():
    gold = ["yes"] * 55 + ["no"] * 25 + ["maybe"] * 20
    warning = collapse_warning(gold, ["yes"] * 100)
    assert warning is not None and "'yes' is predicted for 100% of rows but is 55%" in warning
    honest = ["yes"] * 50 + ["no"] * 30 + ["maybe"] * 20
    assert collapse_warning(gold, honest) is None
    assert collapse_warning(["yes"] * 95 + ["no"] * 5, ["yes"] * 100) is None  # the gold labels are that skewed


def test_collapse_warning_when_accuracy_rises_but_macro_f1_falls():
    base, tuned = {"accuracy": 0.498, "macro_f1": 0.311}, {"accuracy": 0.546, "macro_f1": 0.243}
    warning = collapse_warning(["a", "b"], ["a", "b"], base, tuned)
    assert warning is not None and "macro-F1 fell (31.1% → 24.3%)" in warning
    assert collapse_warning(["a", "b"], ["a", "b"], base, {"accuracy": 0.6, "macro_f1": 0.4}) is None


def test_collapse_watch_warns_once_at_the_first_collapsed_pass(capsys):
    from tunesmith.evaluate.during_training import CollapseWatch

    gold = ["a"] * 6 + ["b"] * 4
    watch = CollapseWatch(gold)
    first = watch(["a"] * 10, {"accuracy": 0.6, "macro_f1": 0.375})  # the base pass: the reference, not judged
    assert first == {"collapse": 0.0, "top_label_share": 1.0}
    fine = watch(["a", "b"] * 5, {"accuracy": 0.5, "macro_f1": 0.5})
    assert fine == {"collapse": 0.0, "top_label_share": 0.5}
    collapsed = watch(["a"] * 10, {"accuracy": 0.6, "macro_f1": 0.375})  # all one label, gold share 60%
    assert collapsed == {"collapse": 1.0, "top_label_share": 1.0}
    again = watch(["a"] * 10, {"accuracy": 0.6, "macro_f1": 0.375})
    assert again["collapse"] == 1.0
    assert capsys.readouterr().err.count("possible collapse") == 1
