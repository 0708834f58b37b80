"""Preference rows: `{prompt, chosen, rejected}`, the layout of TRL's preference datasets and of
`tunesmith feedback export --format dpo`.

The three fields are strings (one user turn, two candidate answers), or TRL's conversational layout: `prompt` a
list of turns, `chosen` and `rejected` each a list holding one assistant turn. The Example is the prompt plus the
chosen answer (so `data check`, duplicates and leakage see the preferred conversation) and carries the rejected
answer beside it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tunesmith.data.example import Example
from tunesmith.data.formats.base import (
    Format,
    RowError,
    chat_example,
    check_messages,
    check_text,
    require,
    single_turn,
    type_name,
)


def _answer(value: object, key: str) -> str:
    """The answer text of `chosen` or `rejected`: a string, or a list holding one assistant turn."""
    if isinstance(value, str):
        return check_text(value, f"field '{key}'")
    if not isinstance(value, list):
        raise RowError("wrong_type", f"field '{key}' must be a string or a list of turns, got {type_name(value)}")
    turns = check_messages(value, key)
    if len(turns) != 1 or turns[0]["role"] != "assistant":
        raise RowError("wrong_shape", f"field '{key}' must hold exactly one assistant turn, got {len(turns)} turn(s)")
    return turns[0]["content"]


def to_example(record: dict[str, Any], line: int, system_prompt: str | None) -> Example:
    prompt = require(record, "prompt")
    chosen = _answer(require(record, "chosen"), "chosen")
    rejected = _answer(require(record, "rejected"), "rejected")
    if chosen.strip() == rejected.strip():
        raise RowError("same_answers", "fields 'chosen' and 'rejected' are the same answer: nothing to prefer")
    if isinstance(prompt, list):
        example = chat_example(
            line, [*check_messages(prompt, "prompt"), {"role": "assistant", "content": chosen}], system_prompt
        )
    else:
        example = single_turn(line, check_text(prompt, "field 'prompt'"), chosen, system_prompt)
    return replace(example, rejected=rejected)


PREFERENCE = Format(name="preference", fields=("prompt", "chosen", "rejected"), optional=(), convert=to_example)
