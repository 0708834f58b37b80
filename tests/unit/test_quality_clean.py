"""`data clean`: every input row lands in exactly one output file, each dropped row with a code and its line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_jsonl
from tunesmith.config import load_config
from tunesmith.data.clean import clean_file
from tunesmith.errors import UserError

pytestmark = pytest.mark.unit

LONG = "the committee reviewed every proposal carefully before the annual meeting in the northern city hall"
TOPICS = "apples rivers engines poetry taxes glaciers violins tennis bridges coffee mushrooms satellites".split()


def qa(prompt: str, answer: str = "ok") -> dict:
    return {"prompt": prompt, "completion": answer}


@pytest.fixture
def dirty(tmp_path: Path) -> tuple[Path, Path]:
    rows = [json.dumps(qa(f"tell me about {a} and {b}")) for a, b in zip(TOPICS[:10], TOPICS[2:12], strict=True)]
    rows += [json.dumps(qa(f"what is {a}?")) for a in TOPICS[:10]]
    rows += [
        json.dumps(qa("Tell me about POETRY, and glaciers!!")),  # line 21: exact duplicate of line 4
        "{not json",  # line 22
        json.dumps({"prompt": "no completion"}),  # line 23
        json.dumps(qa(LONG)),  # line 24
        json.dumps(qa(LONG.replace("annual", "yearly"))),  # line 25: near duplicate of line 24
        json.dumps(qa("this exact prompt is also in the validation file")),  # line 26: leaks
        "",  # blank lines are not rows
        json.dumps(qa("a row that is fine", "fine")),  # line 28
    ]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(rows) + "\n")
    val = write_jsonl(tmp_path / "val.jsonl", [qa("This exact prompt is also in the validation file.", "other")])
    return train, val


def test_clean_accounts_for_every_row(dirty, tmp_path):
    train, val = dirty
    out, rejects = tmp_path / "clean.jsonl", tmp_path / "rejects.jsonl"
    result = clean_file(train, out, rejects, load_config(None, []), val=val)
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    dropped = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert result.rows == 27 == len(kept) + len(dropped) == result.kept + sum(result.dropped.values())
    assert {row["line"]: row["code"] for row in dropped} == {
        21: "exact_duplicate",
        22: "invalid_json",
        23: "missing_field",
        25: "near_duplicate",
        26: "leak_exact_input",
    }
    assert all(row["message"] for row in dropped)
    assert dropped[1]["record"] == "{not json"  # the raw line of an unreadable row is kept
    source = [json.loads(line) for n, line in enumerate(train.read_text().splitlines(), 1) if n in {1, 24, 28}]
    assert all(record in kept for record in source)  # original records, unchanged
    assert "line 4" in dropped[0]["message"] and "line 24" in dropped[3]["message"]


def test_clean_drops_rows_without_trainable_tokens(tmp_path, tiny_tokenizer):
    rows = [qa("short", "fine")] + [qa(f"{topic} " * 40, "answer") for topic in TOPICS[:3]]
    train = write_jsonl(tmp_path / "t.jsonl", rows)
    cfg = load_config(None, ["data.max_length=16"])
    result = clean_file(train, tmp_path / "o.jsonl", tmp_path / "r.jsonl", cfg, tokenizer=tiny_tokenizer)
    assert result.dropped["no_trainable_tokens"] == 3 and result.kept == 1


def test_clean_refuses_to_overwrite_its_input(dirty, tmp_path):
    train, _ = dirty
    with pytest.raises(UserError, match="input file"):
        clean_file(train, train, tmp_path / "r.jsonl", load_config(None, []))
    with pytest.raises(UserError, match="same file"):
        clean_file(train, tmp_path / "x.jsonl", tmp_path / "x.jsonl", load_config(None, []))
