"""Self-training end to end on a tiny model: recipe, summary, pseudo-label files, and the pseudo-label command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_jsonl
from tunesmith.cli.data_semi_cmd import pseudo_label
from tunesmith.config import load_config
from tunesmith.errors import UserError
from tunesmith.recipes.self_training import SUMMARY_FILE, run_self_training

pytestmark = pytest.mark.integration


def row(i: int) -> dict:
    positive = i % 2 == 0
    return {"text": f"{'good' if positive else 'bad'} fox {i}", "label": 1 if positive else 0}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "train.jsonl", [row(i) for i in range(24)])
    write_jsonl(tmp_path / "val.jsonl", [row(i) for i in range(100, 108)])
    # The last unlabeled row copies a validation row: it must never become a pseudo-labelled training row.
    unlabeled = [{"text": row(i)["text"]} for i in range(200, 216)] + [{"text": row(101)["text"]}]
    write_jsonl(tmp_path / "unlabeled.jsonl", unlabeled)
    return tmp_path


def config(model_dir: Path, data: Path, *extra: str):
    return load_config(
        None,
        [
            f"model.name={model_dir}",
            f"data.train={data / 'train.jsonl'}",
            f"data.val={data / 'val.jsonl'}",
            "data.system_prompt=Answer 0 or 1.",
            f"run.output_dir={data / 'runs'}",
            "run.name=st",
            "train.max_steps=4",
            "train.batch_size=4",
            "train.precision=fp32",
            "train.lr=5e-3",
            "data.max_length=64",
            "self_training.rounds=1",
            f"self_training.unlabeled={data / 'unlabeled.jsonl'}",
            "self_training.threshold=0.5",
            "self_training.max_pseudo_rows=10",
            *extra,
        ],
    )


def test_one_round_end_to_end(tiny_model_dir, data):
    root = run_self_training(config(tiny_model_dir, data))
    summary = json.loads((root / SUMMARY_FILE).read_text())
    assert summary["labels"] == ["0", "1"] and summary["eval_rows"] == 8 and summary["unlabeled_rows"] == 17
    assert 0 <= summary["base_eval_accuracy"] <= 1
    first, second = summary["rounds"]
    for entry in (first, second):
        assert (Path(entry["run_dir"]) / "adapter").is_dir() and 0 <= entry["eval_accuracy"] <= 1
    pseudo = second["pseudo_labels"]
    kept = pseudo["kept"]
    # With two labels the top probability is always >= 0.5: only the copy filter and the cap limit what is kept.
    copies = pseudo["copies_of_protected_rows"]
    assert copies >= 1 and pseudo["over_cap"] == 17 - copies - 10
    assert kept == 10 and first["train_rows"] == 24 and second["train_rows"] == 24 + kept
    rows = [json.loads(line) for line in Path(pseudo["file"]).read_text().splitlines()]
    assert len(rows) == kept
    for r in rows:
        assert r["pseudo_label"] is True and r["label"] in (0, 1) and 0.5 <= r["confidence"] <= 1
        assert r["text"] == row(200 + r["source_line"] - 1)["text"] and r["source_line"] != 17
    merged = Path(second["train_file"]).read_text().splitlines()
    assert len(merged) == 24 + kept and json.loads(merged[0]) == row(0)

    # The CLI command, pointed at round 0's run: labels come from that run's training data.
    out = data / "pseudo.jsonl"
    pseudo_label(model=first["run_dir"], unlabeled=data / "unlabeled.jsonl", out_file=out, threshold=0.5)
    cli_rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(cli_rows) == 17 and {r["label"] for r in cli_rows} <= {0, 1}
    assert [r["label"] for r in cli_rows if r["source_line"] in {x["source_line"] for x in rows}] == [
        r["label"] for r in rows
    ]  # same model, same scoring: the recipe's kept rows got the same labels
    pseudo_label(model=first["run_dir"], unlabeled=data / "unlabeled.jsonl", out_file=out, threshold=1.0, labels="1,0")
    assert out.read_text() == ""  # nothing is that certain


def test_needs_val_before_any_run(tiny_model_dir, data):
    cfg = config(tiny_model_dir, data, "data.val=null")
    with pytest.raises(UserError, match=r"data\.val"):
        run_self_training(cfg)
    assert not (data / "runs").exists()
    with pytest.raises(UserError, match="unlabeled"):
        run_self_training(config(tiny_model_dir, data, "self_training.unlabeled=null"))
