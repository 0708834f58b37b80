"""`tunesmith eval` on a tiny text_label run: base zero-/k-shot beside the tuned model, both scorings, eval.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli.main import app
from tunesmith.config import load_config
from tunesmith.evaluate.eval_table import report_table, scoring_note, throughput_note
from tunesmith.evaluate.runner import evaluate_run
from tunesmith.recipes.train import run_train

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def label_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("eval")
    words = ["the quick brown fox", "the lazy dog", "maria lives in porto", "capital of france"]
    rows = [{"text": f"{words[i % 4]} {i}", "label": "good" if i % 4 < 2 else "bad"} for i in range(40)]
    data = tmp / "labels.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(
        None,
        [
            f"model.name={tiny_model_dir}",
            f"data.train={data}",
            "data.format=text_label",
            "data.val_fraction=0.25",
            f"run.output_dir={tmp / 'runs'}",
            "run.name=labels",
            "train.max_steps=4",
            "train.batch_size=8",
            "train.eval_every=4",
            "train.save_every=4",
            "train.precision=fp32",
            "train.lr=5e-3",
            "data.max_length=64",
            "eval.batch_size=8",
            "eval.shots=[0, 2]",
            "data.check.enabled=false",
        ],
    )
    return run_train(cfg).path


def test_baselines_beside_the_tuned_model(label_run: Path):
    report = evaluate_run(label_run)
    names = ["base 0-shot", "base 2-shot", "majority", "stratified random", "tuned"]
    assert [s["name"] for s in report["systems"]] == names
    assert report["scoring"] == "label_likelihood" and report["labels"] == ["bad", "good"]
    assert report["shot_pool"]["rows"] > 0
    models = [s for s in report["systems"] if s["model"] != "prior"]
    for system in models:
        for how in ("label_likelihood", "generation"):
            assert {"accuracy", "macro_f1"} <= set(system[how]["metrics"])
            assert system[how]["rows_per_s"] > 0
            for metric, (low, high) in system[how]["intervals"].items():
                assert low <= system[how]["metrics"][metric] <= high
        assert system["metrics"]["accuracy"] == system["label_likelihood"]["metrics"]["accuracy"]
        scored = system["label_likelihood"]
        assert len(scored["predicted"]) == len(scored["confidence"]) == report["rows"]
        assert [c["label"] for c in scored["per_class"]] == ["bad", "good"] and 0 <= scored["calibration"]["ece"] <= 1
    base0, base2, tuned = models
    assert {"loss", "perplexity"} <= set(base0) and {"loss", "perplexity"} <= set(tuned)
    assert "loss" not in base2 and base2["mean_shots_used"] == 2
    assert report["base"] is base0 and report["tuned"] is tuned  # the keys older readers use
    text = " ".join(str(c) for col in report_table(report).columns for c in col._cells)
    assert "accuracy (label likelihood)" in text and "accuracy (generation)" in text
    assert "label likelihood" in scoring_note(report) and "rows/s" in throughput_note(report)
    majority, stratified = report["systems"][2:4]
    gold = [p["target"] for p in tuned["predictions"]]  # every row generated here (30 rows < max_examples)
    share = {label: gold.count(label) / len(gold) for label in ("bad", "good")}
    assert majority["metrics"]["accuracy"] == pytest.approx(share[majority["label"]])
    assert set(stratified["distribution"]) == {"bad", "good"} and "accuracy" in stratified["prior"]["intervals"]
    versus = tuned["versus"]["label_likelihood"]
    assert set(versus) == set(names[:-1]) and {"difference", "low", "high", "significant"} <= set(
        versus["majority"]["accuracy"]
    )
    assert "mcnemar" in versus["base 0-shot"]["accuracy"] and "mcnemar" not in versus["stratified random"]["accuracy"]
    assert "collapse_warning" in report and report["bootstrap"]["samples"] == 1000
    for system in (base0, tuned):  # the loss read off the label scores: per-row sums, so intervals
        low, high = system["loss_intervals"]["perplexity"]
        assert len(system["row_losses"]) == report["rows"] and low <= system["perplexity"] <= high


def test_cli_writes_eval_json(label_run: Path):
    result = CliRunner().invoke(app, ["eval", str(label_run)])
    assert result.exit_code == 0, result.output
    assert "headline = label likelihood" in result.output
    saved = json.loads((label_run / "eval.json").read_text())
    assert saved["scoring"] == "label_likelihood" and len(saved["systems"]) == 5
    assert "McNemar" in result.output and "per class" in result.output and "calibration" in result.output


def test_old_run_without_its_training_file_still_evaluates(label_run: Path, tmp_path: Path):
    """`--data` on a run whose training file is gone: zero-shot baseline and tuned only (no shot pool)."""
    from tunesmith.methods.loading import run_config

    train_file = Path(run_config(label_run).data.train or "")
    rows = train_file.read_text()
    (tmp_path / "eval.jsonl").write_text("".join(rows.splitlines(keepends=True)[:6]))
    moved = train_file.rename(tmp_path / "gone.jsonl")
    try:
        report = evaluate_run(label_run, str(tmp_path / "eval.jsonl"))
    finally:
        moved.rename(train_file)
    assert [s["name"] for s in report["systems"]] == ["base 0-shot", "tuned"] and report["shot_pool"] is None
    assert report["rows"] == 6 and report["scoring"] == "label_likelihood"


def test_the_base_is_scored_once_then_reused(label_run: Path, tmp_path: Path, monkeypatch):
    """A second eval of the same rows takes every base system from the cache and scores the tuned model only;
    --no-cache (use_cache=False) scores everything again. Any change to the rows gives a new key."""
    import tunesmith.evaluate.runner as runner

    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    first = evaluate_run(label_run)
    assert not any(s.get("cached") for s in first["systems"])
    scored = []
    original = runner.score_system
    monkeypatch.setattr(runner, "score_system", lambda model, *a: scored.append(1) or original(model, *a))
    second = evaluate_run(label_run)
    assert [bool(s.get("cached")) for s in second["systems"] if s["model"] != "prior"] == [True, True, False]
    assert len(scored) == 1  # the tuned model only
    for before, after in zip(first["systems"][:2], second["systems"][:2], strict=True):
        assert before["metrics"] == after["metrics"] and before["label_likelihood"] == after["label_likelihood"]
    assert "cached" in throughput_note(second)
    third = evaluate_run(label_run, use_cache=False)
    assert not any(s.get("cached") for s in third["systems"]) and len(scored) == 4
    assert len(list((tmp_path / "cache" / "eval").glob("*.json"))) == 2
