"""The check training runs first: stops on error findings in one line, is cached, and saves its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_jsonl
from tunesmith.config import load_config
from tunesmith.data.quality import gate
from tunesmith.errors import UserError

pytestmark = pytest.mark.unit

TOPICS = "apples rivers engines poetry taxes glaciers violins tennis bridges coffee mushrooms satellites".split()


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))


def qa_rows() -> list[dict]:
    return [{"prompt": f"what about {a} and {b}?", "completion": f"{b} then {a}"} for a in TOPICS for b in TOPICS[:3]]


def config(tmp_path: Path, *extra: str):
    train = write_jsonl(tmp_path / "train.jsonl", qa_rows())
    return load_config(None, [f"data.train={train}", *extra])


def test_leaky_val_stops_with_one_actionable_line(tmp_path, tiny_tokenizer):
    val = write_jsonl(tmp_path / "val.jsonl", qa_rows()[:2])
    cfg = config(tmp_path, f"data.val={val}")
    with pytest.raises(UserError) as stop:
        gate.check_before_training(cfg, tiny_tokenizer)
    message = str(stop.value)
    assert "\n" not in message and "leakage" in message and "leak_exact_example" in message
    assert "--set data.check.errors=[schema]" in message and "data.check.enabled=false" in message
    allowed = load_config(None, [f"data.train={cfg.data.train}", f"data.val={val}", "data.check.errors=[schema]"])
    report = gate.check_before_training(allowed, tiny_tokenizer)
    assert report["ok"] and report["counts"]["leak_exact_example"] == 2


def test_report_is_cached_and_saved_in_the_run(tmp_path, tiny_tokenizer, monkeypatch):
    cfg = config(tmp_path)
    run = tmp_path / "run"
    first = gate.check_before_training(cfg, tiny_tokenizer, run_dir=run)
    assert json.loads((run / gate.REPORT_FILE).read_text()) == first
    assert list((tmp_path / "cache" / "checks").glob("*.json"))

    def boom(*args, **kwargs):
        raise AssertionError("the cached report should be used")

    monkeypatch.setattr(gate, "check_splits", boom)
    assert gate.check_before_training(cfg, tiny_tokenizer) == first
    changed = config(tmp_path, "data.check.near_duplicate_threshold=0.9")
    with pytest.raises(AssertionError, match="cached"):
        gate.check_before_training(changed, tiny_tokenizer)


def test_disabled_check_returns_none(tmp_path, tiny_tokenizer):
    assert gate.check_before_training(config(tmp_path, "data.check.enabled=false"), tiny_tokenizer) is None


def test_holdout_of_near_copies_warns_instead_of_failing(tmp_path, tiny_tokenizer):
    """Rows that are all near copies of each other cannot be held out cleanly: warn as near duplicates."""
    rows = [{"text": f"The quick brown fox number {i} jumps over the lazy dog. " * 3} for i in range(20)]
    train = write_jsonl(tmp_path / "text.jsonl", rows)
    report = gate.check_before_training(load_config(None, [f"data.train={train}"]), tiny_tokenizer)
    kinds = {f["code"]: f["kind"] for f in report["findings"]}
    assert report["ok"] and kinds["leak_near_example"] == "near_duplicates"


def test_skip_invalid_makes_schema_findings_warnings(tmp_path, tiny_tokenizer):
    train = tmp_path / "bad.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in qa_rows()) + "\n{broken\n")
    cfg = load_config(None, [f"data.train={train}", "data.skip_invalid=true"])
    report = gate.check_before_training(cfg, tiny_tokenizer)
    schema = [f for f in report["findings"] if f["kind"] == "schema"]
    assert report["ok"] and schema[0]["code"] == "invalid_json" and schema[0]["severity"] == "warning"


def test_unknown_error_kind_is_a_user_error(tmp_path, tiny_tokenizer):
    with pytest.raises(UserError, match='Did you mean "leakage"'):
        gate.check_before_training(config(tmp_path, "data.check.errors=[leakge]"), tiny_tokenizer)
