"""Task metrics against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from tunesmith.metrics import (
    METRICS,
    accuracy,
    bleu,
    chrf,
    entities,
    entity_scores,
    exact_match,
    macro_f1,
    normalize_answer,
    perplexity,
    register,
    rouge_l,
    unknown_metric,
)

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


def test_exact_match_ignores_case_punctuation_and_whitespace():
    gold = ["Positive", "the cat", "Paris", "42"]
    pred = ["  positive.", "The  Cat!", "paris, France", "forty-two"]
    # hits: 1 and 2 (normalised equal); 3 has extra words; 4 differs -> 2/4
    assert exact_match(gold, pred) == pytest.approx(0.5)
    assert normalize_answer(" Hello,\tWORLD!! ") == "hello world"
    assert METRICS["exact_match"](["a-b"], ["a b"]) == 1.0  # punctuation becomes a space
    assert math.isnan(exact_match([], []))


def test_rouge_l_by_hand():
    # LCS("the cat sat on the mat", "the cat was on the mat") = the cat on the mat = 5; P = R = 5/6.
    assert rouge_l(["the cat sat on the mat"], ["the cat was on the mat"]) == pytest.approx(5 / 6)
    # ref 4 words, prediction 2 words both in order: P = 2/2, R = 2/4 -> F1 = 2·1·0.5/1.5 = 2/3
    assert rouge_l(["a b c d"], ["b d"]) == pytest.approx(2 / 3)
    # no common word -> 0; the mean over examples: (1 + 0) / 2
    assert rouge_l(["Hello, World", "x"], ["hello world", "y"]) == pytest.approx(0.5)


def test_bleu_by_hand():
    # hyp "the cat sat on a mat" vs ref "the cat sat on the mat": n-gram precisions 5/6, 3/5, 2/4, 1/3,
    # equal lengths (brevity penalty 1) -> BLEU = (5/6 · 3/5 · 2/4 · 1/3) ** (1/4) · 100
    expected = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25 * 100
    assert bleu(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(expected)
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)


def test_chrf_by_hand():
    # Character n-grams (spaces removed), beta 2, averaged over the orders both strings have.
    # "ab" vs "ac": 1-grams P = R = 1/2, 2-grams P = R = 0 -> mean 1/4 -> chrF 25.
    assert chrf(["ac"], ["ab"]) == pytest.approx(25.0)
    # "abd" vs "abc": 1-grams 2/3, 2-grams 1/2, 3-grams 0 -> mean 7/18 -> 38.89.
    assert chrf(["abc"], ["abd"]) == pytest.approx(7 / 18 * 100)
    assert chrf(["same text"], ["same text"]) == pytest.approx(100.0)


def test_perplexity_by_hand():
    # two examples: 2 tokens with NLL sum 2·ln 2, and 2 tokens with NLL sum 2·ln 8 -> mean ln 4 per token -> 4
    assert perplexity([2, 2], [2 * math.log(2), 2 * math.log(8)]) == pytest.approx(4.0)
    assert perplexity([1], [100.0]) == float("inf")
    assert math.isnan(perplexity([0], [0.0]))


def test_registry_kinds_directions_and_names():
    assert {"accuracy", "macro_f1", "entity_f1", "exact_match", "rouge_l", "bleu", "chrf", "perplexity"} <= set(METRICS)
    assert not METRICS["perplexity"].higher_is_better and METRICS["rouge_l"].higher_is_better
    assert METRICS["accuracy"].kind == "label" and METRICS["bleu"].kind == "text"
    assert unknown_metric("accuracy") is None
    assert 'Did you mean "rouge_l"' in (unknown_metric("rougel") or "")
    with pytest.raises(ValueError, match="already registered"):
        register("bleu", METRICS["bleu"])


def test_config_chooses_metrics_with_a_suggestion():
    from tunesmith.config import load_config
    from tunesmith.errors import UserError

    assert load_config(None, ["eval.metrics=[accuracy, chrf]"]).eval.metrics == ["accuracy", "chrf"]
    with pytest.raises(UserError, match='unknown metric .acuracy.. Did you mean "accuracy"'):
        load_config(None, ["eval.metrics=[acuracy]"])


def test_macro_f1_over_a_given_label_set():
    gold = ["pos", "pos", "neg", "neg"]
    pred = ["pos", "maybe", "neg", "what"]  # two answers off the label set
    # over {pos, neg} only: pos TP 1, predicted 1, actual 2 -> 2/3; neg the same -> 2/3
    assert macro_f1(gold, pred, labels=["pos", "neg"]) == pytest.approx(2 / 3)
    # the default union also averages in "maybe" and "what" at F1 0
    assert macro_f1(gold, pred) == pytest.approx((2 / 3 + 2 / 3) / 4)
    assert METRICS["macro_f1"](gold, pred, labels=["pos", "neg"]) == pytest.approx(2 / 3)
    assert METRICS["accuracy"](gold, pred, labels=["pos", "neg"]) == pytest.approx(0.5)  # ignores labels
