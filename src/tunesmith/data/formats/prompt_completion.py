"""Prompt/completion rows: `{prompt, completion}` as two strings, or as two lists of `{role, content}` turns.

The list form is TRL's conversational prompt-completion layout: the prompt turns come first, then the completion
turns, and the completion must hold an assistant turn.
"""

from __future__ import annotations

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


def to_example(record: dict[str, Any], line: int, system_prompt: str | None) -> Example:
    """Strings become one user and one assistant turn; turn lists are joined as prompt + completion."""
    prompt, completion = require(record, "prompt"), require(record, "completion")
    if isinstance(prompt, list) and isinstance(completion, list):
        answer = check_messages(completion, "completion")
        if not any(turn["role"] == "assistant" for turn in answer):
            raise RowError("no_assistant_turn", "field 'completion' has no assistant turn")
        return chat_example(line, check_messages(prompt, "prompt") + answer, system_prompt)
    if isinstance(prompt, list) or isinstance(completion, list):
        raise RowError(
            "wrong_type",
            f"prompt and completion must both be strings or both be lists of turns, "
            f"got {type_name(prompt)} and {type_name(completion)}",
        )
    user = check_text(prompt, "field 'prompt'")
    return single_turn(line, user, check_text(completion, "field 'completion'"), system_prompt)


PROMPT_COMPLETION = Format(name="prompt_completion", fields=("prompt", "completion"), optional=(), convert=to_example)
