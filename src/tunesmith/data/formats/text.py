"""Plain text rows: `{text}` for continued pre-training; every token is trained."""

from __future__ import annotations

from typing import Any

from tunesmith.data.example import Example
from tunesmith.data.formats.base import Format, require_text


def to_example(record: dict[str, Any], line: int, system_prompt: str | None) -> Example:
    """The text as it is; `system_prompt` does not apply to raw text and is ignored."""
    return Example(line=line, text=require_text(record, "text"))


TEXT = Format(name="text", fields=("text",), optional=(), convert=to_example)
