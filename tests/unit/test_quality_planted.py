"""A data set with every fault kind planted at known lines: `data check` must find them all.

Exact faults (schema codes, exact duplicates, exact leakage, conflicting labels, label balance) need 100% recall;
near duplicates and near leakage (1-2 word edits or typos on 20-35 word rows) need >= 95%, with few false alarms.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.data.quality.check import check_files

pytestmark = pytest.mark.unit

SYLLABLES = "ka lo mi ter san vu rek po dan iel shu gor bi nef tal opa wix zem ru cha lin dor fe quo mab sti".split()


def make_vocab(rng: random.Random, size: int = 3000) -> list[str]:
    words = {"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(size * 2)}
    return sorted(words)[:size]


def sentence(rng: random.Random, vocab: list[str]) -> str:
    # Zipf-like: common words repeat across rows, as in real text.
    words = [vocab[min(int(rng.paretovariate(1.1)) - 1, len(vocab) - 1) * 7 % len(vocab)] for _ in range(3)]
    words += rng.sample(vocab, rng.randint(17, 32))
    rng.shuffle(words)
    return " ".join(words).capitalize() + "."


def typo(rng: random.Random, word: str) -> str:
    if len(word) < 3:
        return word + rng.choice("xyz")
    i = rng.randrange(len(word) - 1)
    return rng.choice([word[:i] + word[i + 1] + word[i] + word[i + 2 :], word[:i] + "q" + word[i + 1 :]])


def near_copy(rng: random.Random, text: str, vocab: list[str]) -> str:
    """One or two edits: a word replaced, dropped or added, or a typo."""
    words = text.split()
    for _ in range(rng.randint(1, 2)):
        i = rng.randrange(len(words))
        op = rng.randrange(4)
        if op == 0:
            words[i] = rng.choice(vocab)
        elif op == 1:
            del words[i]
        elif op == 2:
            words.insert(i, rng.choice(vocab))
        else:
            words[i] = typo(rng, words[i])
    return " ".join(words)


def surface_copy(rng: random.Random, text: str) -> str:
    """The same text after folding: other case, punctuation and whitespace."""
    return rng.choice(
        [text.upper(), text.lower().rstrip(".") + " !!", "  " + text.replace(" ", "   ") + " ", text.replace(" ", ", ")]
    )


def chat(user: str, label: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": label}]})


SCHEMA_FAULTS = {
    "invalid_json": '{"messages": [ oops',
    "not_an_object": "[1, 2, 3]",
    "missing_field": json.dumps({"messages": [{"role": "user"}, {"role": "assistant", "content": "positive"}]}),
    "empty_field": json.dumps({"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]}),
    "wrong_type": json.dumps({"messages": "just a string"}),
    "unknown_role": json.dumps({"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}]}),
    "no_assistant_turn": json.dumps({"messages": [{"role": "user", "content": "is anyone there"}]}),
}


@dataclass
class Planted:
    """The files and, per fault, the 1-based lines where it was planted."""

    train: Path
    val: Path
    lines: dict[str, set[int]] = field(default_factory=dict)


def plant(tmp_path: Path, seed: int = 0) -> Planted:
    rng = random.Random(seed)
    vocab = make_vocab(rng)
    train: list[str] = []
    val: list[str] = []
    got: dict[str, set[int]] = {}

    def add(rows: list[str], line: str, fault: str | None = None) -> int:
        rows.append(line)
        if fault:
            got.setdefault(fault, set()).add(len(rows))
        return len(rows)

    labels = ["positive"] * 300 + ["negative"] * 120 + ["neutral"] * 3 + ["mixed"] * 2
    base = [(sentence(rng, vocab), label) for label in labels]
    for text, label in base:
        add(train, chat(text, label))
    originals = base[:400]  # rows the copies are made of (only positive and negative)
    rng.shuffle(originals)
    for code, line in SCHEMA_FAULTS.items():
        for _ in range(3):
            add(train, line, code)
    for _ in range(3):
        got.setdefault("invalid_encoding", set()).add(len(train) + 1)
        train.append("\udcff")  # written as a lone 0xff byte below
    for text, label in originals[:30]:
        add(train, chat(surface_copy(rng, text), label), "exact_duplicate")
    for text, label in originals[30:90]:
        add(train, chat(near_copy(rng, text, vocab), label), "near_duplicate")
    for text, label in originals[90:100]:
        other = "negative" if label == "positive" else "positive"
        add(train, chat(text, other), "conflicting_labels")
    for _ in range(100):
        add(val, chat(sentence(rng, vocab), rng.choice(["positive", "negative"])))
    for text, label in originals[100:110]:
        add(val, chat(surface_copy(rng, text), label), "leak_exact_example")
    for text, label in originals[110:120]:
        other = "negative" if label == "positive" else "positive"
        add(val, chat(text, other), "leak_exact_input")
    for text, label in originals[120:160]:
        add(val, chat(near_copy(rng, text, vocab), label), "leak_near")
    train_file, val_file = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    train_file.write_bytes("\n".join(train).encode("utf-8", "surrogateescape") + b"\n")
    val_file.write_text("\n".join(val) + "\n")
    return Planted(train_file, val_file, got)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    data = plant(tmp_path_factory.mktemp("planted"))
    report = check_files({"train": str(data.train), "val": str(data.val)}, load_config(None, [])).as_dict()
    return data, report


def reported(report: dict, code: str, split: str, key: str = "line") -> set[int]:
    return {row[key] for f in report["findings"] if f["code"] == code and f["split"] == split for row in f["rows"]}


@pytest.mark.parametrize("code", [*SCHEMA_FAULTS, "invalid_encoding"])
def test_every_schema_fault_is_found_with_its_code(planted, code):
    data, report = planted
    assert reported(report, code, "train") == data.lines[code]
    assert report["counts"][code] == 3


def test_exact_duplicates_full_recall(planted):
    data, report = planted
    assert data.lines["exact_duplicate"] <= reported(report, "exact_duplicate", "train")


def test_near_duplicates_recall_and_precision(planted):
    data, report = planted
    planted_lines = data.lines["near_duplicate"]
    found = reported(report, "near_duplicate", "train")
    recall = len(planted_lines & found) / len(planted_lines)
    assert len(planted_lines) >= 40 and recall >= 0.95, recall
    # Besides the planted copies, only the conflicting rows (same text, other label) are near copies.
    unexpected = found - planted_lines - data.lines["conflicting_labels"]
    assert len(unexpected) <= 2, sorted(unexpected)


def test_exact_leakage_full_recall(planted):
    data, report = planted
    assert reported(report, "leak_exact_example", "train→val") == data.lines["leak_exact_example"]
    assert reported(report, "leak_exact_input", "train→val") == data.lines["leak_exact_input"]


def test_near_leakage_recall(planted):
    data, report = planted
    found = reported(report, "leak_near_example", "train→val") | reported(report, "leak_near_input", "train→val")
    recall = len(data.lines["leak_near"] & found) / len(data.lines["leak_near"])
    assert recall >= 0.95, recall
    assert found <= data.lines["leak_near"]  # no clean val row is reported


def test_conflicting_labels_within_and_across(planted):
    data, report = planted
    within = {
        line
        for f in report["findings"]
        if f["code"] == "conflicting_labels" and f["split"] == "train"
        for row in f["rows"]
        for line in row["lines"]
    }
    assert data.lines["conflicting_labels"] <= within
    assert reported(report, "conflicting_labels", "train→val") == data.lines["leak_exact_input"]


def test_label_balance(planted):
    _, report = planted
    codes = {f["code"]: f for f in report["findings"] if f["kind"] == "imbalance"}
    assert "label_imbalance" in codes
    assert {row["label"] for row in codes["rare_label"]["rows"]} == {"neutral", "mixed"}
    assert report["labels"]["train"]["positive"] > report["labels"]["train"]["negative"]


def test_severity_follows_config(planted):
    _, report = planted
    kinds = {f["kind"]: f["severity"] for f in report["findings"]}
    assert kinds["schema"] == kinds["leakage"] == "error"
    assert kinds["duplicates"] == kinds["near_duplicates"] == kinds["conflicts"] == "warning"
    assert report["ok"] is False
