"""Augmentation: inputs change, labels/outputs never do, provenance is recorded, seeds reproduce, val leaks stop."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from conftest import write_jsonl
from tunesmith.augment import AUGMENTERS, AugmentConfig, assert_no_val_leak, augment_file
from tunesmith.augment.fields import get_text, input_paths
from tunesmith.augment.paraphrase import clean_paraphrase
from tunesmith.augment.synonyms import lexicon, replace_synonyms
from tunesmith.augment.typos import add_typos
from tunesmith.augment.word_dropout import drop_words
from tunesmith.augment.word_swap import swap_words
from tunesmith.data.example import Example
from tunesmith.data.load import load_examples
from tunesmith.errors import UserError

pytestmark = pytest.mark.unit
NOISE = ["typos", "word_dropout", "word_swap", "synonyms"]
TEXTS = [
    "a great and often funny movie about a good director",
    "the plot is boring and the acting is terrible",
    "an excellent , moving story with a wonderful cast",
]
ROWS = {
    "text_label": [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS)],
    "alpaca": [
        {"instruction": f"Describe this great film: {t}", "input": t, "output": "a great movie, really good"}
        for t in TEXTS
    ],
    "prompt_completion": [{"prompt": t, "completion": "great terrible movie"} for t in TEXTS],
    "chat": [
        {
            "messages": [
                {"role": "system", "content": "You rate good movies."},
                {"role": "user", "content": t},
                {"role": "assistant", "content": "a good movie"},
                {"role": "user", "content": "and the great director ?"},
                {"role": "assistant", "content": "a great director"},
            ]
        }
        for t in TEXTS
    ],
}


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def answer_side(row: dict, fmt: str) -> object:
    """Everything augmentation must leave alone."""
    if fmt == "text_label":
        return row["label"]
    if fmt == "alpaca":
        return row["output"]
    if fmt == "prompt_completion":
        return row["completion"]
    return [t for t in row["messages"] if t["role"] != "user"]


@pytest.mark.parametrize("fmt", list(ROWS))
@pytest.mark.parametrize("method", NOISE)
def test_method_changes_input_never_output(tmp_path, fmt, method):
    src = write_jsonl(tmp_path / "train.jsonl", ROWS[fmt])
    report = augment_file(src, tmp_path / "out.jsonl", [method], AugmentConfig(seed=1))
    rows = read(tmp_path / "out.jsonl")
    originals, variants = rows[::2], rows[1::2]  # each source row is followed by its one variant
    assert originals == ROWS[fmt] and len(variants) == len(TEXTS) == report.written[method]
    for source, variant in zip(originals, variants, strict=True):
        assert variant["augment_method"] == method and variant["augmented_from"] == originals.index(source) + 1
        assert answer_side(variant, fmt) == answer_side(source, fmt)
        paths = input_paths(source, fmt)
        assert [get_text(variant, p) for p in paths] != [get_text(source, p) for p in paths]
    # The readers ignore the provenance fields: the output detects and loads as the same format.
    loaded = load_examples(tmp_path / "out.jsonl")
    assert loaded.format == fmt and len(loaded.examples) == 2 * len(TEXTS)


def test_deterministic_by_seed_and_no_originals(tmp_path):
    src = write_jsonl(tmp_path / "train.jsonl", ROWS["text_label"])
    outs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        augment_file(src, tmp_path / f"{name}.jsonl", NOISE, AugmentConfig(seed=seed, per_row=2), originals=False)
        outs.append((tmp_path / f"{name}.jsonl").read_text())
    assert outs[0] == outs[1] and outs[0] != outs[2]
    rows = read(tmp_path / "a.jsonl")
    assert rows and all("augment_method" in r for r in rows)
    # Variants of a row never repeat the row or each other.
    for line in {r["augmented_from"] for r in rows}:
        texts = [r["text"] for r in rows if r["augmented_from"] == line] + [TEXTS[line - 1]]
        assert len(set(texts)) == len(texts)


def test_row_variants_do_not_depend_on_other_rows(tmp_path):
    first = write_jsonl(tmp_path / "one.jsonl", ROWS["text_label"][:1])
    augment_file(first, tmp_path / "o1.jsonl", ["typos"], AugmentConfig(seed=5))
    every = write_jsonl(tmp_path / "all.jsonl", ROWS["text_label"])
    augment_file(every, tmp_path / "o3.jsonl", ["typos"], AugmentConfig(seed=5))
    assert read(tmp_path / "o1.jsonl")[1] == read(tmp_path / "o3.jsonl")[1]


def test_val_leak_guard(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "good movie", "label": 1}])
    # word_dropout on a two-word input can only leave "good" or "movie": both are validation inputs.
    val = write_jsonl(tmp_path / "val.jsonl", [{"text": "GOOD ", "label": 1}, {"text": "movie", "label": 0}])
    with pytest.raises(UserError, match="same input as a validation row"):
        augment_file(train, tmp_path / "out.jsonl", ["word_dropout"], val=val)
    assert not (tmp_path / "out.jsonl").exists()
    other = write_jsonl(tmp_path / "other.jsonl", [{"text": "a different film", "label": 1}])
    augment_file(train, tmp_path / "out.jsonl", ["word_dropout"], val=other)
    assert len(read(tmp_path / "out.jsonl")) == 2


def test_assert_no_val_leak_direct():
    def ex(line: int, text: str) -> Example:
        return Example(line=line, messages=({"role": "user", "content": text}, {"role": "assistant", "content": "x"}))

    assert_no_val_leak([ex(1, "a b")], [ex(1, "a c")])
    with pytest.raises(UserError, match="training line 7 equals val line 2"):
        assert_no_val_leak([ex(7, "A  b\n")], [ex(1, "z"), ex(2, "a b")])


def test_user_errors(tmp_path):
    src = write_jsonl(tmp_path / "train.jsonl", ROWS["text_label"])
    with pytest.raises(UserError, match='Did you mean "typos"'):
        augment_file(src, tmp_path / "o.jsonl", ["typo"])
    with pytest.raises(UserError, match="no input side"):
        augment_file(write_jsonl(tmp_path / "t.jsonl", [{"text": "raw"}]), tmp_path / "o.jsonl", ["typos"])
    with pytest.raises(UserError, match="must not be the input"):
        augment_file(src, src, ["typos"])
    with pytest.raises(UserError, match=".jsonl"):
        augment_file(src, tmp_path / "o.csv", ["typos"])


def test_noise_functions_edge_cases():
    rng = random.Random(0)
    assert add_typos("123 !!", rng, 0.1) is None
    assert drop_words("single", rng, 0.5) is None
    assert swap_words("same same", rng, 0.5) is None
    assert replace_synonyms("zzz qqq", rng, 0.5) is None
    kept = drop_words("line one\nline two\nline three", random.Random(2), 0.3)
    assert kept is not None and "\n" in kept  # the space before a kept word, line breaks included, survives
    assert replace_synonyms("A GREAT film.", random.Random(1), 1.0, {"great": ("superb",), "film": ("movie",)}) == (
        "A SUPERB movie."
    )
    assert replace_synonyms("a great one", random.Random(1), 1.0, {"great": ("excellent",)}) == "an excellent one"


def test_lexicon_is_symmetric_and_offline():
    table = lexicon()
    assert len(table) > 400
    assert "terrible" not in table["great"] and "great" in table["terrific"]
    for word, alternatives in table.items():
        assert word not in alternatives
        assert all(word in table[alt.lower()] for alt in alternatives)


def test_clean_paraphrase():
    assert clean_paraphrase('Paraphrase: "A fine film."', "a good movie") == "A fine film."
    assert clean_paraphrase("a good movie", "A good  movie") is None
    assert clean_paraphrase("   ", "a good movie") is None
    assert clean_paraphrase("x" * 500, "short") is None
    assert clean_paraphrase("first line\nsecond line", "one line") == "first line"
    assert clean_paraphrase("It's slow.", "it 's slow") is None  # only detokenised: not a paraphrase
    assert clean_paraphrase('The original text is: "a slow film.', "it 's slow") == "a slow film."
    assert clean_paraphrase("Here is the rewritten text: So slow.", "it 's slow") == "So slow."


def test_registry():
    assert list(AUGMENTERS) == ["typos", "word_dropout", "word_swap", "synonyms", "paraphrase"]


@pytest.mark.integration
def test_paraphrase_plumbing_with_tiny_model(tmp_path, tiny_model_dir):
    src = write_jsonl(tmp_path / "train.jsonl", ROWS["alpaca"])
    cfg = AugmentConfig(model=str(tiny_model_dir), per_row=2, max_new_tokens=12, batch_size=2)
    report = augment_file(src, tmp_path / "out.jsonl", ["paraphrase"], cfg)
    name = "paraphrase"
    assert report.written[name] + report.unchanged[name] + report.duplicates[name] == 2 * len(TEXTS)
    rows = read(tmp_path / "out.jsonl")
    assert len(rows) == len(TEXTS) + report.written[name]
    for row in rows:
        assert row["output"] == "a great movie, really good"
        if "augment_method" in row:
            assert row["augment_method"] == name and 1 <= row["augmented_from"] <= len(TEXTS)
