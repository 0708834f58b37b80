"""Evaluation during training on a tiny model: generation metrics in metrics.jsonl, the best checkpoint by a
metric, the overfitting monitor and early stopping on the metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.config import load_config
from tunesmith.recipes.train import run_train
from tunesmith.tasks import sft

pytestmark = pytest.mark.integration


def config(model_dir: Path, data: Path, out: Path, name: str, *extra: str):
    return load_config(
        None,
        [
            f"model.name={model_dir}",
            f"data.train={data}",
            f"run.output_dir={out}",
            f"run.name={name}",
            "train.batch_size=4",
            "train.eval_every=2",
            "train.save_every=100",
            "train.precision=fp32",
            "train.lr=5e-3",
            "data.max_length=64",
            "eval.batch_size=8",
            "eval.max_new_tokens=8",
            "data.check.enabled=false",
            *extra,
        ],
    )


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_generation_metrics_logged_and_best_by_metric(tiny_model_dir, qa_data, tmp_path):
    cfg = config(
        tiny_model_dir,
        qa_data,
        tmp_path,
        "gen",
        "train.max_steps=4",
        "train.eval_metrics=[exact_match, rouge_l]",
        "train.eval_rows=4",
        "train.best_metric=rouge_l",
    )
    run = run_train(cfg).path
    evals = [r for r in rows(run) if "val_loss" in r]
    assert [r["step"] for r in evals] == [0, 2, 4]
    for r in evals:
        assert {"val_exact_match", "val_rouge_l", "val_perplexity", "overfit_streak", "is_best"} <= set(r)
        assert r["best_metric"] == "rouge_l"
    assert all("train_val_gap" in r and "train_loss_mean" in r for r in evals[1:])
    summary = json.loads((run / "summary.json").read_text())
    best = max(evals, key=lambda r: (r["val_rouge_l"], -r["step"]))  # the first evaluation reaching the max
    assert summary["best_metric"] == "rouge_l" and summary["best_step"] == best["step"]
    assert summary["best_score"] == pytest.approx(best["val_rouge_l"])


def test_scripted_metric_picks_weights_warns_and_stops_early(tiny_model_dir, qa_data, tmp_path, monkeypatch):
    """A scripted validation metric through the real loop: peak at step 4, then worse every evaluation. The
    exported weights are step 4's, the monitor warns, early stopping ends the run after `patience` evaluations."""
    script = iter([0.1, 0.5, 0.9, 0.6, 0.4, 0.3, 0.2, 0.1])
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    losses = iter([3.0 - 0.1 * i for i in range(20)])  # a falling val loss: by loss the last step would win

    def scripted(cfg, tokenizer, fmt, train, val, val_encoded, pad):
        def evaluate(model):
            step = len(snapshots) * 2
            snapshots[step] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            return next(losses), {"accuracy": next(script)}

        return evaluate

    monkeypatch.setattr(sft, "sft_evaluator", scripted)
    cfg = config(
        tiny_model_dir,
        qa_data,
        tmp_path,
        "scripted",
        "train.max_steps=40",
        "train.epochs=5",
        "train.best_metric=accuracy",
        "train.early_stopping_patience=3",
        "train.overfit_patience=2",
    )
    run = run_train(cfg).path
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_early"] and summary["steps"] == 10  # evaluations at 6, 8, 10 were not better
    assert summary["best_step"] == 4 and summary["best_score"] == pytest.approx(0.9)
    best = load_file(run / "best" / "trainable.safetensors")
    for name, tensor in snapshots[4].items():
        torch.testing.assert_close(best[name], tensor)
    evals = [r for r in rows(run) if "val_loss" in r]
    assert [r["is_best"] for r in evals] == [True, True, True, False, False, False]
    # Overfitting: accuracy worse at 6, 8, 10; a warning once two evaluations in a row also had a falling train
    # loss (the tiny model's train loss falls at this learning rate; the streak counts only those).
    assert all(r["overfit_streak"] <= i for i, r in enumerate(evals))
    fell = [b["train_loss_mean"] < a["train_loss_mean"] for a, b in zip(evals[1:], evals[2:], strict=False)]
    if all(fell[-3:]):
        assert evals[-1]["overfit_streak"] == 3 and evals[-1]["overfit_warning"] is True


def test_classify_task_picks_weights_by_its_own_accuracy(tiny_bert_dir, tmp_path):
    """A task's own metric (classify logs accuracy) can be the best metric without train.eval_metrics."""
    from tunesmith.recipes.train import run_train

    words = ["good", "great", "fine", "bad", "awful", "poor"]
    data = tmp_path / "sentiment.jsonl"
    data.write_text(
        "".join(
            json.dumps({"text": f"the movie was {words[i % 6]} {i}", "label": "pos" if i % 6 < 3 else "neg"}) + "\n"
            for i in range(40)
        )
    )
    cfg = config(tiny_bert_dir, data, tmp_path, "classify", "task.name=classify", "train.max_steps=4")
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"best_metric": "accuracy"})})
    run = run_train(cfg).path
    evals = [r for r in rows(run) if "val_loss" in r]
    assert all(r["best_metric"] == "accuracy" and "val_accuracy" in r for r in evals)
    best = max(evals, key=lambda r: (r["val_accuracy"], -r["step"]))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_step"] == best["step"] and summary["best_score"] == pytest.approx(best["val_accuracy"])


def _sentiment_rows(count: int) -> list[dict]:
    words = ["good", "great", "fine", "bad", "awful", "poor"]
    return [{"text": f"the movie was {words[i % 6]} {i}", "label": "pos" if i % 6 < 3 else "neg"} for i in range(count)]


def test_label_rows_are_validated_by_label_likelihood_on_every_row(tiny_model_dir, tmp_path):
    """Classification-like rows: accuracy and macro-F1 at each pass come from label likelihood over all the
    validation rows (not the first 64 by generation), the same numbers `eval`'s scoring gives the same model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.data.load import load_examples
    from tunesmith.evaluate.label_scoring import accuracy_by_likelihood
    from tunesmith.metrics import METRICS

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in _sentiment_rows(40)))
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps(r) + "\n" for r in _sentiment_rows(141)[40:]))  # 101: more than 64
    cfg = config(
        tiny_model_dir,
        train,
        tmp_path,
        "likelihood",
        f"data.val={val}",
        "data.format=text_label",
        "train.max_steps=2",
        "train.eval_metrics=[accuracy, macro_f1]",
        "train.best_metric=accuracy",
    )
    run = run_train(cfg).path
    step0 = next(r for r in rows(run) if "val_loss" in r and r["step"] == 0)
    examples = load_examples(str(val), "text_label").examples
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    accuracy, predicted = accuracy_by_likelihood(model, tokenizer, examples, ["neg", "pos"], batch_size=8)
    gold = [e.target for e in examples]
    assert len(examples) == 101
    assert step0["val_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert step0["val_macro_f1"] == pytest.approx(METRICS["macro_f1"](gold, predicted, labels=["neg", "pos"]))


def test_label_likelihood_validation_refuses_text_metrics(tiny_model_dir, qa_data, tmp_path):
    from tunesmith.errors import UserError

    cfg = config(
        tiny_model_dir,
        qa_data,
        tmp_path,
        "refused",
        "train.max_steps=2",
        "train.eval_metrics=[rouge_l]",
        "train.eval_scoring=label_likelihood",
    )
    with pytest.raises(UserError, match="train.eval_scoring=label_likelihood: .*use train.eval_scoring=generation"):
        run_train(cfg)
