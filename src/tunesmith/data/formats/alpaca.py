"""Alpaca rows: `{instruction, input?, output}`, one instruction answered once."""

from __future__ import annotations

from typing import Any

from tunesmith.data.example import Example
from tunesmith.data.formats.base import Format, check_text, require_text, single_turn


def to_example(record: dict[str, Any], line: int, system_prompt: str | None) -> Example:
    """User turn = instruction, plus a blank line and the input when the input is not empty; assistant = output."""
    instruction = require_text(record, "instruction")
    extra = record.get("input")
    if extra is not None and check_text(extra, "field 'input'", allow_empty=True).strip():
        instruction = f"{instruction}\n\n{extra}"
    return single_turn(line, instruction, require_text(record, "output"), system_prompt)


ALPACA = Format(
    name="alpaca",
    fields=("instruction", "output"),
    optional=("input",),
    convert=to_example,
    shape="{instruction, input?, output}",
)
