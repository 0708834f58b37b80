"""Classification rows: `{text, label}`; the model learns to answer the text with its label."""

from __future__ import annotations

from typing import Any

from tunesmith.data.example import Example
from tunesmith.data.formats.base import Format, RowError, check_text, require, require_text, single_turn, type_name


def to_example(record: dict[str, Any], line: int, system_prompt: str | None) -> Example:
    """User turn = text; assistant turn = the label as a string (a string, number or boolean label)."""
    text = require_text(record, "text")
    label = require(record, "label")
    if isinstance(label, dict | list | tuple):
        raise RowError("wrong_type", f"field 'label' must be a string, number or boolean, got {type_name(label)}")
    return single_turn(line, text, check_text(str(label), "field 'label'"), system_prompt)


TEXT_LABEL = Format(name="text_label", fields=("text", "label"), optional=(), convert=to_example)
