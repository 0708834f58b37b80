"""The tokenization cache: a hit returns exactly what encoding returns; any change to a key part misses."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tunesmith.data import token_cache
from tunesmith.data.example import Example
from tunesmith.data.token_cache import cache_key, encode_cached, entry_path, tokenizer_fingerprint
from tunesmith.data.tokenize import encode_examples

pytestmark = pytest.mark.unit


def _rows(system: str | None = None, answer: str = "yes") -> list[Example]:
    rows = []
    for i in range(6):
        turns = [{"role": "user", "content": f"question {i} " + "the " * i}, {"role": "assistant", "content": answer}]
        if system:
            turns.insert(0, {"role": "system", "content": system})
        rows.append(Example(line=i + 1, messages=tuple(turns)))
    rows.append(Example(line=7, text="The quick brown fox jumps over the lazy dog. " * 4))
    return rows


def _hit(tokenizer, rows, max_length, root) -> bool:
    return encode_cached(tokenizer, rows, max_length, root=root)[2]


def test_hit_returns_identical_encodings_and_report(tiny_tokenizer, tmp_path):
    rows = _rows()
    fresh, fresh_report = encode_examples(tiny_tokenizer, rows, 16)  # truncates and splits text blocks
    first = encode_cached(tiny_tokenizer, rows, 16, root=tmp_path)
    second = encode_cached(tiny_tokenizer, rows, 16, root=tmp_path)
    assert (first[2], second[2]) == (False, True)
    assert second[0] == fresh and second[1] == fresh_report
    assert fresh_report.truncated_lines  # the report's lists survive the round trip too
    assert len(list((tmp_path / token_cache.FOLDER).iterdir())) == 1  # no temporary file left behind


def test_every_key_part_changes_the_entry(tiny_tokenizer, tmp_path):
    rows = _rows()
    assert not _hit(tiny_tokenizer, rows, 32, tmp_path)
    assert _hit(tiny_tokenizer, rows, 32, tmp_path)
    assert not _hit(tiny_tokenizer, rows, 33, tmp_path)  # max_length
    assert not _hit(tiny_tokenizer, rows[:-1], 32, tmp_path)  # the data (here: the split)
    assert not _hit(tiny_tokenizer, _rows(answer="no"), 32, tmp_path)  # a changed row
    assert not _hit(tiny_tokenizer, _rows(system="be brief"), 32, tmp_path)  # the system prompt
    moved = [Example(line=e.line + 1, messages=e.messages, text=e.text) for e in rows]
    assert not _hit(tiny_tokenizer, moved, 32, tmp_path)  # the reported lines

    template = copy.deepcopy(tiny_tokenizer)
    template.chat_template = tiny_tokenizer.chat_template + "{# v2 #}"
    assert not _hit(template, rows, 32, tmp_path)  # the chat template
    vocab = copy.deepcopy(tiny_tokenizer)
    vocab.add_tokens(["zebra"])
    assert not _hit(vocab, rows, 32, tmp_path)  # the vocabulary
    renamed = copy.deepcopy(tiny_tokenizer)
    renamed.name_or_path = "other/tokenizer"
    assert not _hit(renamed, rows, 32, tmp_path)  # the tokenizer's name
    eos = copy.deepcopy(tiny_tokenizer)
    eos.eos_token = "<|endoftext|>"
    assert not _hit(eos, rows, 32, tmp_path)  # the end-of-sequence token


def test_encoder_code_is_part_of_the_key(tiny_tokenizer, tmp_path, monkeypatch):
    before = tokenizer_fingerprint(tiny_tokenizer)
    changed = tmp_path / "tokenize.py"
    changed.write_text(Path(token_cache.tokenize.__file__).read_text() + "\n# changed\n")
    monkeypatch.setattr(token_cache.tokenize, "__file__", str(changed))
    assert tokenizer_fingerprint(tiny_tokenizer) != before


def test_unreadable_entry_is_encoded_again(tiny_tokenizer, tmp_path):
    rows = _rows()
    encode_cached(tiny_tokenizer, rows, 32, root=tmp_path)
    path = entry_path(cache_key(tokenizer_fingerprint(tiny_tokenizer), rows, 32), tmp_path)
    path.write_bytes(b"garbage")
    encoded, _, hit = encode_cached(tiny_tokenizer, rows, 32, root=tmp_path)
    assert not hit and encoded == encode_examples(tiny_tokenizer, rows, 32)[0]
    assert _hit(tiny_tokenizer, rows, 32, tmp_path)  # rewritten
