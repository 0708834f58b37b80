"""Best-checkpoint choice by a metric, and the overfitting monitor, one evaluation at a time."""

from __future__ import annotations

import pytest

from tunesmith.config import load_config
from tunesmith.errors import UserError
from tunesmith.train.checkpoint import TrainState
from tunesmith.train.monitor import BestMetric, judge

pytestmark = pytest.mark.unit


def run(best: BestMetric, evals: list[tuple[float, float, float | None]], patience: int | None = 2):
    """evals: (val loss, accuracy, mean train loss since the previous evaluation) at steps 0, 10, 20..."""
    state, out = TrainState(), []
    for i, (loss, acc, train) in enumerate(evals):
        state.step = 10 * i
        out.append(judge(state, best, loss, {"accuracy": acc}, train, patience))
    return state, out


def test_direction_comes_from_the_metric_or_the_config():
    assert BestMetric.from_config(load_config(None, []).train) == BestMetric("loss", False)
    cfg = load_config(None, ["train.best_metric=accuracy"]).train
    assert BestMetric.from_config(cfg) == BestMetric("accuracy", True)
    assert BestMetric.from_config(load_config(None, ["train.best_metric=perplexity"]).train).higher_is_better is False
    cfg = load_config(None, ["train.best_metric=accuracy", "train.best_mode=min"]).train
    assert BestMetric.from_config(cfg).higher_is_better is False


def test_best_by_accuracy_not_by_loss():
    # The loss keeps falling, but accuracy peaks at step 20: the best weights are step 20's.
    state, verdicts = run(
        BestMetric("accuracy", True), [(2.0, 0.5, None), (1.5, 0.6, 3.0), (1.2, 0.8, 2.0), (1.0, 0.7, 1.5)]
    )
    assert [v.is_best for v in verdicts] == [True, True, True, False]
    assert state.best_step == 20 and state.best_score == 0.8 and state.best_val_loss == 1.2
    assert state.evals_since_best == 1
    _, by_loss = run(BestMetric(), [(2.0, 0.5, None), (1.5, 0.6, 3.0), (1.2, 0.8, 2.0), (1.0, 0.7, 1.5)])
    assert [v.is_best for v in by_loss] == [True, True, True, True]


def test_overfitting_warns_after_patience_evaluations():
    evals = [
        (2.0, 0.50, None),  # step 0: base
        (1.5, 0.70, 2.5),
        (1.6, 0.65, 2.0),  # worse while train falls: streak 1
        (1.7, 0.60, 1.5),  # streak 2 -> warning (patience 2)
        (1.8, 0.55, 1.6),  # train loss rose: streak resets
    ]
    state, verdicts = run(BestMetric("accuracy", True), evals, patience=2)
    assert [v.log["overfit_streak"] for v in verdicts] == [0, 0, 1, 2, 0]
    assert [v.overfit_warning for v in verdicts] == [False, False, False, True, False]
    assert verdicts[3].log["overfit_warning"] is True and "overfit_warning" not in verdicts[4].log
    assert verdicts[1].log["train_val_gap"] == pytest.approx(1.5 - 2.5)
    assert "train_val_gap" not in verdicts[0].log  # no training before the base evaluation
    _, quiet = run(BestMetric("accuracy", True), evals, patience=None)
    assert not any(v.overfit_warning for v in quiet)


def test_a_metric_not_computed_is_a_user_error():
    with pytest.raises(UserError, match="add it to train.eval_metrics"):
        judge(TrainState(), BestMetric("rouge_l", True), 1.0, {"perplexity": 2.7}, None, None)


def test_config_rejects_unknown_best_metric():
    with pytest.raises(UserError, match='Did you mean "accuracy"'):
        load_config(None, ["train.best_metric=acuracy"])
    with pytest.raises(UserError, match="or 'loss'"):
        load_config(None, ["train.best_metric=zzz"])
