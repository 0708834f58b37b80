"""`data split` and the training hold-out: no duplicate group straddles two splits, labels are stratified, seeded."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from conftest import write_jsonl
from tunesmith.config import load_config
from tunesmith.data.prepare import split_examples
from tunesmith.data.quality.check import check_files
from tunesmith.data.split import assign_groups, split_file

pytestmark = pytest.mark.unit

WORDS = [
    f"{a}{b}" for a in ("ka", "lo", "mi", "ter", "san", "vu", "rek", "po") for b in ("zo", "ni", "del", "fa", "qu")
]


def rows_with_copies(n: int = 300, seed: int = 0) -> list[dict]:
    """Labelled rows (3 labels, 60/30/10%) where every tenth row gets an exact copy and a near copy later."""
    rng = random.Random(seed)
    labels = ["pos"] * 6 + ["neg"] * 3 + ["odd"]
    rows = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) + str(rng.randrange(1000)) for _ in range(rng.randint(12, 20)))
        rows.append({"text": text, "label": labels[i % 10]})
    for i in range(0, n, 10):
        rows.append({"text": rows[i]["text"].upper() + " !", "label": rows[i]["label"]})
        words = rows[i]["text"].split()
        words[len(words) // 2] = "changed"
        rows.append({"text": " ".join(words), "label": rows[i]["label"]})
    rng.shuffle(rows)
    return rows


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "all.jsonl", rows_with_copies())


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_split_has_zero_leakage_by_construction(data, tmp_path):
    cfg = load_config(None, [])
    split_file(data, tmp_path / "out", 0.1, 0.1, 0, cfg.data)
    out = tmp_path / "out"
    report = check_files(
        {"train": str(out / "train.jsonl"), "val": str(out / "val.jsonl"), "test": str(out / "test.jsonl")}, cfg
    ).as_dict()
    assert not [f for f in report["findings"] if f["kind"] == "leakage" or "→" in f["split"]]
    within = check_files({"train": str(data)}, cfg).as_dict()["counts"]
    assert within["exact_duplicate"] == 30 and within["near_duplicate"] >= 29  # the copies were there to split


def test_split_keeps_every_row_once_and_stratifies(data, tmp_path):
    result = split_file(data, tmp_path / "out", 0.1, 0.2, 0, load_config(None, []).data)
    source = read(data)
    parts = {name: read(path) for name, path in result.files.items()}
    assert sorted(map(json.dumps, source)) == sorted(json.dumps(r) for rows in parts.values() for r in rows)
    totals = Counter(r["label"] for r in source)
    for name, fraction in (("val", 0.1), ("test", 0.2)):
        counts = Counter(r["label"] for r in parts[name])
        for label, total in totals.items():
            assert abs(counts[label] - round(fraction * total)) <= 1, (name, label, counts[label])
    assert result.labels["val"] == Counter(r["label"] for r in parts["val"])


def test_split_is_deterministic_by_seed(data, tmp_path):
    cfg = load_config(None, []).data
    first = split_file(data, tmp_path / "a", 0.1, 0.1, 3, cfg)
    again = split_file(data, tmp_path / "b", 0.1, 0.1, 3, cfg)
    other = split_file(data, tmp_path / "c", 0.1, 0.1, 4, cfg)
    for name in ("train", "val", "test"):
        assert first.files[name].read_text() == again.files[name].read_text()
    assert first.files["val"].read_text() != other.files["val"].read_text()


def test_assign_groups_never_splits_a_group():
    groups = [[0, 1, 2], [3], [4, 5], *[[i] for i in range(6, 40)]]
    labels = ["a"] * 20 + ["b"] * 20
    parts = assign_groups(groups, labels, {"val": 0.25}, seed=1)
    where = {i: name for name, idx in parts.items() for i in idx}
    assert all(len({where[i] for i in group}) == 1 for group in groups)
    assert sorted(where) == list(range(40))
    assert abs(Counter(labels[i] for i in parts["val"])["a"] - 5) <= 1


def test_holdout_keeps_duplicates_on_one_side(tmp_path, qa_data):
    """The qa rows repeat 7 prompts: an automatic hold-out must not put copies of one prompt on both sides."""
    cfg = load_config(None, [f"data.train={qa_data}"])
    splits = split_examples(cfg.data, seed=0)
    train_prompts = {e.messages[0]["content"] for e in splits.train}
    val_prompts = {e.messages[0]["content"] for e in splits.val}
    assert val_prompts and train_prompts and not train_prompts & val_prompts
    assert len(splits.train) + len(splits.val) == 40


def test_split_rejects_bad_fractions(data, tmp_path):
    from tunesmith.errors import UserError

    with pytest.raises(UserError, match="less than 1"):
        split_file(data, tmp_path / "o", 0.6, 0.5, 0, load_config(None, []).data)
