"""The validation-leak guard: an augmented training input must not equal a validation input."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from tunesmith.data.example import Example
from tunesmith.errors import UserError


def input_key(example: Example) -> str:
    """The example's input (its non-system prompt turns, or raw text) in a form that ignores case and spacing."""
    if example.text is not None:
        text = example.text
    else:
        text = "\n".join(turn["content"] for turn in example.prompt_messages if turn["role"] != "system")
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().lower()


def assert_no_val_leak(augmented: Sequence[Example], val_examples: Sequence[Example], val_name: str = "val") -> None:
    """Raise `UserError` when any augmented example's normalised input equals a validation example's input.

    `Example.line` of an augmented example is taken as its source line, which the message names.
    """
    val_lines: dict[str, int] = {}
    for example in val_examples:
        val_lines.setdefault(input_key(example), example.line)
    leaks = [(example, val_lines[key]) for example in augmented if (key := input_key(example)) in val_lines]
    if leaks:
        example, val_line = leaks[0]
        raise UserError(
            f"{len(leaks)} augmented row(s) have the same input as a validation row (first: the variant of "
            f"training line {example.line} equals {val_name} line {val_line}); training on them would leak "
            "validation data: remove those training rows or choose other methods"
        )
