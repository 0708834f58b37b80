"""`tunesmith data check | clean | split` end to end, and training stopped by the data check."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import write_jsonl
from tunesmith.cli.main import app

pytestmark = pytest.mark.integration
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))
runner = CliRunner()


def rows(n: int = 120) -> list[dict]:
    """Distinct sentences of random words (a template shared by all rows would make them near duplicates)."""
    rng = random.Random(0)
    words = [a + b for a in ("ka", "lo", "mi", "ter", "san", "vu", "rek", "po") for b in ("zo", "ni", "del", "fa")]
    return [
        {
            "text": " ".join(rng.choice(words) + str(rng.randrange(100)) for _ in range(12)),
            "label": ["yes", "no"][i % 2],
        }
        for i in range(n)
    ]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    data = rows()
    return {
        "train": write_jsonl(tmp_path / "train.jsonl", data[:100]),
        "val": write_jsonl(tmp_path / "val.jsonl", data[100:120]),
        "leaky": write_jsonl(tmp_path / "leaky.jsonl", data[100:110] + [{**data[5], "text": data[5]["text"].upper()}]),
    }


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TUNESMITH_CACHE": str(cwd / "cache")}
    return subprocess.run([TUNESMITH, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_check_clean_data_exits_0(files):
    result = runner.invoke(app, ["data", "check", str(files["train"]), "--val", str(files["val"]), "--no-tokenizer"])
    assert result.exit_code == 0, result.output
    assert "OK: 0 error finding(s)" in result.output and "labels" in result.output


def test_check_with_leakage_exits_1_and_writes_json(files, tmp_path):
    out = tmp_path / "report" / "check.json"
    args = ["data", "check", str(files["train"]), "--val", str(files["leaky"]), "--no-tokenizer", "--json", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    report = json.loads(out.read_text())
    assert report["ok"] is False and report["counts"] == {"leak_exact_example": 1}
    assert out.with_suffix(".lengths.png").is_file()
    allowed = runner.invoke(app, [*args, "--set", "data.check.errors=[schema]"])
    assert allowed.exit_code == 0, allowed.output


def test_check_with_tokenizer_reports_lengths(files, tiny_model_dir):
    args = [
        "data",
        "check",
        str(files["train"]),
        "--set",
        f"model.name={tiny_model_dir}",
        "--set",
        "data.max_length=12",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "over_max_length" in result.output and "tokens per row" in result.output


def test_check_missing_file_exits_2_in_one_line(tmp_path):
    result = run_cli("data", "check", "nope.jsonl", "--no-tokenizer", cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope.jsonl" in lines[0]


def test_clean_prints_counts_that_add_up(files, tmp_path):
    dirty = tmp_path / "dirty.jsonl"
    dirty.write_text(files["train"].read_text() + "{bad\n" + files["train"].read_text().splitlines()[0] + "\n")
    args = ["data", "clean", str(dirty), "--out", str(tmp_path / "c.jsonl"), "--rejects", str(tmp_path / "r.jsonl")]
    result = runner.invoke(app, [*args, "--val", str(files["leaky"]), "--no-tokenizer"])
    assert result.exit_code == 0, result.output
    output = result.output.replace("\n", " ")
    assert "102 rows = 99 kept + 3 dropped" in output
    assert all(f"{code} 1" in output for code in ("exact_duplicate", "invalid_json", "leak_exact_example"))
    assert len((tmp_path / "c.jsonl").read_text().splitlines()) == 99
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 3


def test_split_writes_three_files(files, tmp_path):
    result = runner.invoke(app, ["data", "split", str(files["train"]), "--out-dir", str(tmp_path / "s"), "--seed", "1"])
    assert result.exit_code == 0, result.output
    sizes = {
        name: len((tmp_path / "s" / f"{name}.jsonl").read_text().splitlines()) for name in ("train", "val", "test")
    }
    assert sizes == {"train": 80, "val": 10, "test": 10}
    assert "no: 5" in result.output and "yes: 5" in result.output


def test_training_stops_on_leakage_before_a_run_exists(files, tmp_path, tiny_model_dir):
    (tmp_path / "cfg.yaml").write_text(f"model:\n  name: {tiny_model_dir}\ntrain:\n  max_steps: 2\n")
    result = run_cli(
        "train",
        "cfg.yaml",
        "--set",
        f"data.train={files['train']}",
        "--set",
        f"data.val={files['leaky']}",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "leak_exact_example" in lines[0] and "data.check.enabled=false" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_augment_command_writes_variants_with_their_source(files, tmp_path):
    out = tmp_path / "augmented.jsonl"
    result = runner.invoke(app, ["data", "augment", str(files["train"]), "--out", str(out), "--methods", "typos"])
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in out.read_text().splitlines()]
    variants = [r for r in written if r.get("augment_method") == "typos"]
    assert len(written) == 200 and len(variants) == 100  # each original is followed by its typo variant
    assert all(v["label"] == o["label"] and v["augmented_from"] for o, v in zip(written[::2], variants, strict=True))


def test_augment_refuses_a_variant_that_copies_a_val_input(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "a b", "label": "x"}])
    val = write_jsonl(tmp_path / "val.jsonl", [{"text": "a", "label": "x"}])
    args = ["data", "augment", str(train), "--out", str(tmp_path / "o.jsonl"), "--methods", "word_dropout"]
    result = subprocess.run([TUNESMITH, *args, "--per-row", "3", "--val", str(val)], capture_output=True, text=True)
    assert result.returncode == 2 and not (tmp_path / "o.jsonl").exists()
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
