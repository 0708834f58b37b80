"""What `tunesmith eval` decides to compute from the data and the config."""

from __future__ import annotations

import pytest

from tunesmith.config import load_config
from tunesmith.data.example import Example
from tunesmith.evaluate.scoring import as_label, candidate_labels, plan_eval

pytestmark = pytest.mark.unit


def ex(line: int, prompt: str, answer: str) -> Example:
    return Example(line, ({"role": "user", "content": prompt}, {"role": "assistant", "content": answer}))


def test_generated_answers_map_onto_labels():
    labels = ["negative", "positive", "very positive"]
    assert as_label(" Positive.", labels) == "positive"
    assert as_label("very positive indeed", labels) == "very positive"  # the longest label it starts with
    assert as_label("positive, I think", labels) == "positive"
    assert as_label("neutral", labels) == "neutral"  # off the label set: counted wrong
    assert as_label("The review is negative.", labels) == "negative"  # the only label it names
    assert as_label("The review is very positive", labels) == "very positive"  # not also "positive"
    assert as_label("not positive but negative", labels) == "not positive but negative"  # two labels: wrong


def test_classification_is_detected_from_format_or_short_repeated_answers():
    rows = [ex(i, f"text {i}", "yes" if i % 2 else "no") for i in range(10)]
    assert candidate_labels("text_label", rows[:1], rows[1:2]) == ["no", "yes"]
    assert candidate_labels("prompt_completion", rows, []) == ["no", "yes"]
    essays = [ex(i, f"q {i}", f"a long answer number {i} with many words") for i in range(10)]
    assert candidate_labels("prompt_completion", essays, []) is None


def test_plan_defaults_and_overrides(tiny_tokenizer):
    cfg = load_config(None, [])
    labelled = [ex(i, f"text {i}", "good" if i % 2 else "bad") for i in range(8)]
    plan = plan_eval(cfg, tiny_tokenizer, "text_label", labelled, labelled)
    assert plan.scoring == "label_likelihood" and plan.labels == ["bad", "good"]
    assert plan.metrics == ["accuracy", "macro_f1", "perplexity"] and plan.generate
    assert plan.max_new_tokens < cfg.eval.max_new_tokens  # a label needs a few tokens only
    short = [ex(i, f"q {i}", f"answer {i}") for i in range(8)]
    plan = plan_eval(cfg, tiny_tokenizer, "prompt_completion", short[4:], short[:4])
    assert plan.scoring == "generation" and plan.metrics == ["exact_match", "perplexity"]
    long = [ex(i, "q", " ".join(["the quick brown fox jumps"] * 10) + str(i)) for i in range(4)]
    assert plan_eval(cfg, tiny_tokenizer, "alpaca", long, long).metrics == ["rouge_l", "bleu", "chrf", "perplexity"]
    chosen = load_config(None, ["eval.metrics=[chrf]", "eval.exact_match=off"])
    plan = plan_eval(chosen, tiny_tokenizer, "alpaca", long, long)
    assert plan.metrics == ["chrf"] and not plan.generate
