"""One huge field in a valid row (issue 15, defect 6): the row is measured before it is tokenized in full, so
a multi-megabyte field costs about what a normal row does; it is truncated or dropped and counted as before."""

from __future__ import annotations

import json
import time

import pytest

from tunesmith.config import load_config
from tunesmith.data.example import Example
from tunesmith.data.quality.check import check_files
from tunesmith.data.tokenize import CHARS_PER_TOKEN, bounded, encode_examples

pytestmark = pytest.mark.unit


def _chat(user: str, answer: str, line: int = 1) -> Example:
    return Example(line, ({"role": "user", "content": user}, {"role": "assistant", "content": answer}))


def test_a_huge_prompt_is_cut_before_tokenizing_and_dropped_as_before(tiny_tokenizer):
    huge = _chat("word " * 2_000_000, "fine")  # 10 MB
    started = time.perf_counter()
    encoded, report = encode_examples(tiny_tokenizer, [huge, _chat("hi", "hello", 2)], max_length=64)
    assert time.perf_counter() - started < 2  # tokenizing the whole field took ~10 s
    assert report.truncated_lines == [1] and report.dropped_no_target_lines == [1]
    assert [e.line for e in encoded] == [2]


def test_cutting_keeps_what_training_sees(tiny_tokenizer):
    long_answer = _chat("Say it.", " ".join(f"token{i}" for i in range(3000)))
    full, _ = encode_examples(tiny_tokenizer, [long_answer], max_length=100_000)
    cut = bounded(long_answer, 64)
    kept = sum(len(m["content"]) for m in cut.messages)
    assert kept == 64 * CHARS_PER_TOKEN < len(long_answer.messages[1]["content"])
    small, report = encode_examples(tiny_tokenizer, [long_answer], max_length=64)
    assert small[0].input_ids == full[0].input_ids[:64] and small[0].labels == full[0].labels[:64]
    assert report.truncated_lines == [1]


def test_a_huge_field_through_the_data_check(tmp_path, tiny_tokenizer):
    rows = [{"prompt": f"Say {i}", "completion": f"ok {i}"} for i in range(20)]
    rows[3] = {"prompt": "word " * 2_000_000, "completion": "fine"}  # 10 MB
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    started = time.perf_counter()
    report = check_files({"train": str(path)}, load_config(None, ["data.max_length=64"]), tiny_tokenizer)
    assert time.perf_counter() - started < 10  # the field was tokenized twice in full before: > 20 s
    kinds = {(f.kind, f.code) for f in report.findings}
    assert ("length", "over_max_length") in kinds and ("length", "no_trainable_tokens") in kinds
