"""Task metrics against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from tunesmith.evaluate.metrics import METRICS, accuracy, entities, entity_scores, macro_f1

pytestmark = pytest.mark.unit


def test_accuracy_and_macro_f1_by_hand():
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "c", "c"]
    assert accuracy(gold, pred) == pytest.approx(4 / 6)
    # a: TP 2, predicted 2, actual 3 -> 4/5; b: TP 1, predicted 2, actual 2 -> 1/2;
    # c: TP 1, predicted 2, actual 1 -> 2/3
    assert macro_f1(gold, pred) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_macro_f1_counts_a_label_only_predicted():
    # "x" never occurs in gold: F1 0 for it, as scikit-learn's macro average over the union of labels.
    assert macro_f1(["a", "a"], ["a", "x"]) == pytest.approx((2 / 3 + 0) / 2)
    assert math.isnan(accuracy([], [])) and math.isnan(macro_f1([], []))
    with pytest.raises(ValueError):
        accuracy(["a"], [])


def test_entity_spans_follow_conlleval():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "B-LOC", "I-ORG", "B-PER"]
    assert entities(tags) == {
        ("PER", 0, 2),
        ("LOC", 3, 5),  # I- after O starts an entity
        ("LOC", 5, 6),  # B- after an entity of the same type starts a new one
        ("LOC", 6, 7),
        ("ORG", 7, 8),  # I- of another type starts a new entity
        ("PER", 8, 9),  # an entity running to the end is closed
    }
    assert entities(["O", "O"]) == set()


def test_entity_f1_exact_span_and_type():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-PER", "O"]]
    # gold: PER(0,2), LOC(3,4), ORG(0,1) = 3; predicted: PER(0,1), LOC(3,4), PER(0,1) = 3; only LOC matches.
    scores = entity_scores(gold, pred)
    assert scores["precision"] == pytest.approx(1 / 3) and scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(1 / 3)
    assert METRICS["entity_f1"](gold, gold) == 1.0
    assert entity_scores([["O"]], [["O"]])["f1"] == 0.0  # nothing to find, nothing found


def test_entity_f1_precision_and_recall_differ():
    gold = [["B-A", "O", "B-B", "I-B"]]
    pred = [["B-A", "B-A", "B-B", "I-B"]]
    scores = entity_scores(gold, pred)
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == 1.0
    assert scores["f1"] == pytest.approx(0.8)
