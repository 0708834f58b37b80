"""Token tagging rows: `{tokens: [str], ner_tags: [str]}`, one BIO tag per token (CoNLL / WNUT-17 style NER).

An `Example` holds chat turns or raw text, so a row becomes one question/answer pair: the user turn is the tokens
joined by single spaces, the assistant turn the tags joined by single spaces. Every generic tool (data check,
splits, the sft task) then works unchanged, and `tokens_and_tags` gets both lists back exactly, because rows with
an empty token or a token containing a space are refused.
"""

from __future__ import annotations

from typing import Any

from tunesmith.data.example import Example
from tunesmith.data.formats.base import Format, RowError, check_text, require, single_turn, type_name


def word_list(value: object, key: str) -> list[str]:
    """A non-empty list of strings without spaces (they are joined and split on single spaces)."""
    if not isinstance(value, list):
        raise RowError("wrong_type", f"field '{key}' must be a list of strings, got {type_name(value)}")
    if not value:
        raise RowError("empty_field", f"field '{key}' is an empty list")
    for index, word in enumerate(value):
        text = check_text(word, f"{key}[{index}]")
        if " " in text:
            raise RowError("space_in_token", f"{key}[{index}] {text[:40]!r} contains a space; split it into tokens")
    return value


def to_example(record: dict[str, Any], line: int, system_prompt: str | None) -> Example:
    """User turn = the tokens, assistant turn = their tags, each joined by single spaces."""
    tokens = word_list(require(record, "tokens"), "tokens")
    tags = word_list(require(record, "ner_tags"), "ner_tags")
    if len(tokens) != len(tags):
        raise RowError("length_mismatch", f"{len(tokens)} tokens but {len(tags)} ner_tags; give one tag per token")
    return single_turn(line, " ".join(tokens), " ".join(tags), system_prompt)


def tokens_and_tags(example: Example) -> tuple[list[str], list[str]]:
    """The token and tag lists of an example made by this format."""
    tokens = example.prompt_messages[-1]["content"].split(" ")
    return tokens, (example.target or "").split(" ")


TOKENS_TAGS = Format(name="tokens_tags", fields=("tokens", "ner_tags"), optional=(), convert=to_example)
