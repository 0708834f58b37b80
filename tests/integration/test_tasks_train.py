"""Drive `run_train` end to end for classify, ner and pretrain on tiny BERT and tiny Llama models."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.config import load_config
from tunesmith.errors import UserError
from tunesmith.recipes.train import run_train
from tunesmith.tasks import TASKS

pytestmark = pytest.mark.integration


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _sentiment_rows(n: int, first: int) -> list[dict]:
    """Rows whose string label follows one word of the text."""
    rng = random.Random(first)
    words = {"pos": ["good", "great", "fine"], "neg": ["bad", "awful", "poor"]}
    return [
        {"text": f"the {rng.choice(['movie', 'film'])} was {rng.choice(words[label])} {i}", "label": label}
        for i, label in enumerate(("pos" if i % 2 else "neg" for i in range(n)), start=first)
    ]


@pytest.fixture
def sentiment(tmp_path: Path) -> tuple[Path, Path]:
    """(train, val): 40 and 12 labelled sentences."""
    return (
        _write(tmp_path / "sentiment.jsonl", _sentiment_rows(40, 0)),
        _write(tmp_path / "sentiment-val.jsonl", _sentiment_rows(12, 100)),
    )


@pytest.fixture
def people(tmp_path: Path) -> Path:
    """40 sentences with a person and a place."""
    rng = random.Random(0)
    rows = []
    for i in range(40):
        name, city = rng.choice(["Maria", "Acme"]), rng.choice(["Porto", "Paris"])
        rows.append({"tokens": [name, "lives", "in", city, str(i)], "ner_tags": ["B-PER", "O", "O", "B-LOC", "O"]})
    return _write(tmp_path / "people.jsonl", rows)


def task_config(model_dir: Path, data: Path | tuple[Path, Path], out: Path, name: str, task: str, *extra: str):
    train, val = data if isinstance(data, tuple) else (data, None)
    return load_config(
        None,
        [
            f"model.name={model_dir}",
            f"data.train={train}",
            *([f"data.val={val}"] if val else []),
            f"run.output_dir={out}",
            f"run.name={name}",
            f"task.name={task}",
            "train.max_steps=4",
            "train.batch_size=4",
            "train.eval_every=2",
            "data.check.enabled=false",  # the pre-training data check has its own tests
            "train.lr=5e-3",
            "train.precision=fp32",
            "data.max_length=32",
            *extra,
        ],
    )


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_classify_full_on_bert_saves_the_label_mapping_and_predicts(tiny_bert_dir, sentiment, tmp_path):
    from transformers import AutoModelForSequenceClassification

    cfg = task_config(tiny_bert_dir, sentiment, tmp_path, "cls", "classify", "method.name=full", "train.max_steps=8")
    summary = _summary(run_train(cfg).path)
    run = tmp_path / "cls"
    assert summary["task"] == "classify" and summary["labels"] == ["neg", "pos"]
    assert 0 <= summary["val_accuracy"] <= 1 and 0 <= summary["val_macro_f1"] <= 1
    assert summary["tuned_val_loss"] < summary["base_val_loss"] and "tuned_val_perplexity" not in summary
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_accuracy" in r for r in rows)  # metrics at every evaluation
    # Plain transformers reloads the exported classifier with its label names.
    model = AutoModelForSequenceClassification.from_pretrained(run / "model")
    assert model.config.id2label == {0: "neg", 1: "pos"} and model.config.label2id == {"neg": 0, "pos": 1}

    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["predict", str(run), "--data", str(sentiment[1]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output
    predictions = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(predictions) == 12
    for row in predictions:
        assert set(row["probabilities"]) == {"neg", "pos"}
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
    # predict reads the same sentence vector as training (mean pooling, not the checkpoint's pooler).
    loss = -sum(math.log(row["probabilities"][row["gold"]]) for row in predictions) / len(predictions)
    assert loss == pytest.approx(summary["tuned_val_loss"], abs=2e-3)


def test_classify_lora_keeps_the_base_bit_identical(tiny_bert_dir, sentiment, tmp_path):
    from peft import PeftModel
    from transformers import AutoModel

    run = run_train(task_config(tiny_bert_dir, sentiment, tmp_path, "cls-lora", "classify", "method.name=lora")).path
    summary = _summary(run)
    assert summary["trainable_params"] < summary["total_params"]
    adapter_config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["task_type"] == "SEQ_CLS" and "classifier" in adapter_config["modules_to_save"]

    from tunesmith.methods.loading import run_config
    from tunesmith.tasks.heads import load_trained

    tuned, _, labels = load_trained(run, run_config(run), "sequence")
    assert isinstance(tuned, PeftModel) and labels == ["neg", "pos"]
    original = dict(AutoModel.from_pretrained(tiny_bert_dir).named_parameters())
    base_params = tuned.get_base_model().named_parameters()
    frozen = {n.removeprefix("bert.").replace(".base_layer", ""): p for n, p in base_params}
    compared = [n for n in original if n in frozen and "pooler" not in n]
    assert len(compared) == len([n for n in original if "pooler" not in n])
    assert all(torch.equal(original[n], frozen[n]) for n in compared)
    heads = [p for n, p in tuned.named_parameters() if "classifier.modules_to_save" in n]
    assert heads and any(p.abs().sum() > 0 for p in heads)


def test_classify_lora_on_a_decoder(tiny_model_dir, sentiment, tmp_path):
    run = run_train(task_config(tiny_model_dir, sentiment, tmp_path, "cls-llama", "classify", "method.name=lora")).path
    summary = _summary(run)
    assert summary["labels"] == ["neg", "pos"] and "val_accuracy" in summary
    rows, metrics = TASKS["classify"].predict(run, str(sentiment[1]))
    assert metrics["labelled_rows"] == 12
    assert all(sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5) for r in rows)


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_model_dir"])
def test_classify_with_prompt_tuning_trains_the_new_head(request, fixture, sentiment, tmp_path):
    """PEFT wraps a classifier as SEQ_CLS (not as a causal LM), so the new head trains next to the prompt."""
    model_dir = request.getfixturevalue(fixture)
    cfg = task_config(model_dir, sentiment, tmp_path, "cls-prompt", "classify", "method.name=prompt_tuning")
    cfg.train.max_steps = 3
    summary = _summary(run_train(cfg).path)
    assert summary["steps"] == 3 and 0 <= summary["val_accuracy"] <= 1
    assert summary["parameters"]["groups"]["head"]["trainable"] > 0


def test_prefix_tuning_on_a_classifier_is_a_one_line_error(tiny_bert_dir, sentiment, tmp_path):
    cfg = task_config(tiny_bert_dir, sentiment, tmp_path, "cls-prefix", "classify", "method.name=prefix_tuning")
    with pytest.raises(UserError, match="use prompt_tuning, lora or full"):
        run_train(cfg)
    assert not (tmp_path / "cls-prefix").exists()


@pytest.mark.parametrize(("fixture", "method"), [("tiny_bert_dir", "full"), ("tiny_model_dir", "lora")])
def test_ner_trains_and_tags_every_token(request, fixture, method, people, tmp_path):
    model_dir = request.getfixturevalue(fixture)
    run = run_train(task_config(model_dir, people, tmp_path, f"ner-{method}", "ner", f"method.name={method}")).path
    summary = _summary(run)
    assert summary["labels"] == ["B-LOC", "B-PER", "O"] and 0 <= summary["val_entity_f1"] <= 1
    rows, metrics = TASKS["ner"].predict(run, str(people))
    assert "entity_f1" in metrics
    for row in rows:
        assert len(row["tags"]) == len(row["tokens"]) == len(row["probabilities"])
        assert set(row["tags"]) <= {"B-LOC", "B-PER", "O"}


def test_pretrain_packs_a_text_file_and_reports_perplexity(tiny_model_dir, tmp_path):
    """Paragraphs of a .txt file are the documents; the last 10% of them are the validation text."""
    text = tmp_path / "corpus.txt"
    text.write_text("\n\n".join(f"The quick brown fox number {i} jumps.\nOver the lazy dog." for i in range(30)))
    run = run_train(task_config(tiny_model_dir, text, tmp_path, "pre", "pretrain", "method.name=full")).path
    summary = _summary(run)
    assert summary["val_perplexity"] < summary["base_val_perplexity"]
    report = json.loads((run / "data_report.json").read_text())
    assert report["format"] == "txt" and report["train"]["tokens"] == report["train"]["encoded"] * 32
    assert report["train"]["examples_in"] == 27 and report["val"]["examples_in"] == 3  # tail held out


def test_sft_runs_through_the_shared_recipe(tiny_model_dir, qa_data, tmp_path):
    run = run_train(task_config(tiny_model_dir, qa_data, tmp_path, "sft", "sft", "train.max_steps=1")).path
    summary = _summary(run)
    assert summary["task"] == "sft" and summary["steps"] == 1 and (run / "adapter").is_dir()
    assert summary["tuned_val_perplexity"] > 1 and summary["base_val_perplexity"] > 1


def _preference_rows(n: int, first: int) -> list[dict]:
    """A consistent preference: answer with the city, never decline."""
    rng = random.Random(first)
    rows = []
    for i in range(first, first + n):
        city = rng.choice(["Paris", "Porto"])
        rows.append(
            {"prompt": f"Where is Maria {i}?", "chosen": f"Maria lives in {city}.", "rejected": "I do not know."}
        )
    return rows


@pytest.mark.parametrize(("method", "loss"), [("lora", "sigmoid"), ("full", "ipo")])
def test_dpo_learns_the_preference_and_predict_scores_both_answers(tiny_model_dir, tmp_path, method, loss):
    train = _write(tmp_path / "pairs.jsonl", _preference_rows(40, 0))
    val = _write(tmp_path / "pairs-val.jsonl", _preference_rows(12, 100))
    cfg = task_config(
        tiny_model_dir, (train, val), tmp_path, "dpo", "dpo", f"method.name={method}", f"task.preference_loss={loss}",
        "train.max_steps=8", "train.best_metric=reward_accuracy", "data.max_length=64",
    )  # fmt: skip
    summary = _summary(run_train(cfg).path)
    run = tmp_path / "dpo"
    assert summary["task"] == "dpo" and summary["train_examples"] == 40 and summary["val_examples"] == 12
    assert summary["tuned_val_loss"] < summary["base_val_loss"]
    assert summary["val_reward_accuracy"] > 0.5 and summary["val_reward_margin"] > 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    base = next(r for r in rows if r.get("step") == 0 and "val_loss" in r)
    assert base["val_reward_margin"] == pytest.approx(0, abs=1e-5)  # the base is its own reference

    out = tmp_path / "scores.jsonl"
    result = CliRunner().invoke(app, ["predict", str(run), "--data", str(val), "--out", str(out)])
    assert result.exit_code == 0, result.output
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(scored) == 12 and all(
        set(r) == {"line", "chosen_logp", "rejected_logp", "prefers_chosen"} for r in scored
    )
    assert sum(r["prefers_chosen"] for r in scored) / 12 >= base["val_preference_accuracy"]


def test_dpo_options_on_another_task_are_config_errors(tiny_model_dir, qa_data, tmp_path):
    with pytest.raises(UserError, match="beta applies to the dpo task"):
        task_config(tiny_model_dir, qa_data, tmp_path, "x", "sft", "task.beta=0.5")
