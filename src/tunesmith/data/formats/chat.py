"""Chat rows: `{messages: [{role, content}, ...]}` with system, user and assistant turns."""

from __future__ import annotations

from typing import Any

from tunesmith.data.example import Example
from tunesmith.data.formats.base import Format, chat_example, check_messages, require


def to_example(record: dict[str, Any], line: int, system_prompt: str | None) -> Example:
    """Keep the turns as they are (role and content only); at least one must be an assistant turn."""
    turns = check_messages(require(record, "messages"), "messages")
    return chat_example(line, turns, system_prompt)


CHAT = Format(name="chat", fields=("messages",), optional=(), convert=to_example)
