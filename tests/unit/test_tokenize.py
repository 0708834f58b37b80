"""Chat rendering and label masking: only assistant turns train, EOS ends them, every drop is counted."""

from __future__ import annotations

import pytest

from tunesmith.data.example import Example
from tunesmith.data.tokenize import encode_examples
from tunesmith.train.numerics import IGNORE_INDEX

pytestmark = pytest.mark.unit


def chat(*turns: tuple[str, str], line: int = 1) -> Example:
    return Example(line=line, messages=tuple({"role": r, "content": c} for r, c in turns))


def trained_text(tok, enc) -> str:
    return tok.decode([t for t in enc.labels if t != IGNORE_INDEX])


def test_only_assistant_turns_and_their_end_marker_train(tiny_tokenizer):
    ex = chat(
        ("system", "be brief"),
        ("user", "capital of France?"),
        ("assistant", "Paris."),
        ("user", "and Italy?"),
        ("assistant", "Rome."),
    )
    (enc,), report = encode_examples(tiny_tokenizer, [ex], 256)
    text = trained_text(tiny_tokenizer, enc)
    assert "Paris." in text and "Rome." in text and text.count("<|im_end|>") == 2
    assert "France" not in text and "be brief" not in text and "assistant" not in text
    assert report.trainable_tokens == enc.n_trainable > 0


def test_eos_is_appended_when_the_template_does_not_end_turns_with_it(tiny_tokenizer):
    template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    saved = tiny_tokenizer.chat_template
    tiny_tokenizer.chat_template = template
    try:
        (enc,), _ = encode_examples(tiny_tokenizer, [chat(("user", "hi"), ("assistant", "hello"))], 64)
    finally:
        tiny_tokenizer.chat_template = saved
    assert enc.input_ids[-1] == tiny_tokenizer.eos_token_id and enc.labels[-1] == tiny_tokenizer.eos_token_id


def test_truncation_is_counted_and_targetless_rows_are_dropped(tiny_tokenizer):
    long_prompt = chat(("user", "word " * 200), ("assistant", "ok"), line=7)
    long_answer = chat(("user", "hi"), ("assistant", "yes " * 200), line=8)
    fine = chat(("user", "hi"), ("assistant", "ok"), line=9)
    encoded, report = encode_examples(tiny_tokenizer, [long_prompt, long_answer, fine], 32)
    assert report.dropped_no_target_lines == [7]
    assert report.truncated_lines == [7, 8]
    assert [e.line for e in encoded] == [8, 9]
    assert all(len(e.input_ids) <= 32 and e.n_trainable > 0 for e in encoded)


def test_raw_text_is_blocked_not_truncated(tiny_tokenizer):
    text = Example(line=3, text="The quick brown fox jumps over the lazy dog. " * 20)
    encoded, report = encode_examples(tiny_tokenizer, [text], 16)
    assert len(encoded) > 1 and all(len(e.input_ids) <= 16 for e in encoded)
    assert sum(len(e.input_ids) for e in encoded) == report.tokens
    assert all(e.labels == e.input_ids for e in encoded)
