"""train.eval_scoring resolved for the validation rows: label likelihood for label sets and label metrics."""

from __future__ import annotations

import pytest

from tunesmith.config import load_config
from tunesmith.data.example import Example
from tunesmith.errors import UserError
from tunesmith.evaluate.during_training import validation_rows, validation_scoring


def cfg(*sets: str):
    return load_config(None, ["model.name=tiny", "data.train=x.jsonl", *sets])


@pytest.mark.parametrize(
    ("sets", "labels", "expected"),
    [
        (["train.eval_metrics=[accuracy, macro_f1]"], ["neg", "pos"], "label_likelihood"),
        (["train.eval_metrics=[accuracy]"], None, "generation"),  # no label set: generated answers
        (["train.eval_metrics=[accuracy, rouge_l]"], ["neg", "pos"], "generation"),  # a text metric
        (["train.eval_metrics=[accuracy]", "train.eval_scoring=generation"], ["neg", "pos"], "generation"),
    ],
)
def test_auto_picks_label_likelihood_only_for_label_sets_and_label_metrics(sets, labels, expected):
    assert validation_scoring(cfg(*sets), labels) == expected


def test_forced_label_likelihood_without_a_label_set_is_one_clear_error():
    with pytest.raises(UserError, match="no label set"):
        validation_scoring(cfg("train.eval_metrics=[accuracy]", "train.eval_scoring=label_likelihood"), None)


def test_every_row_under_label_likelihood_and_64_under_generation_unless_eval_rows_says():
    val = [
        Example(line=i, messages=({"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}))
        for i in range(100)
    ]
    assert len(validation_rows(cfg(), val, "label_likelihood")) == 100
    assert len(validation_rows(cfg(), val, "generation")) == 64
    assert len(validation_rows(cfg("train.eval_rows=10"), val, "label_likelihood")) == 10
