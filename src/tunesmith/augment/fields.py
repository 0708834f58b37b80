"""Which fields of a row are its input: the only text augmentation may change.

The label/output side (label, output, completion, assistant turns) is never returned here, so no method can
touch it. Paths are key/index tuples into the row, e.g. ("text",) or ("messages", 2, "content").
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from tunesmith.errors import UserError

FieldPath = tuple[str | int, ...]


def _user_turns(turns: object, key: str) -> list[FieldPath]:
    """Paths to the content of every user turn in a list of `{role, content}` turns."""
    if not isinstance(turns, list):
        return []
    return [
        (key, i, "content")
        for i, turn in enumerate(turns)
        if isinstance(turn, dict) and turn.get("role") == "user" and isinstance(turn.get("content"), str)
    ]


def input_paths(record: dict[str, Any], format: str) -> list[FieldPath]:
    """The input-side text fields of one (already validated) row of `format`."""
    if format == "text_label":
        return [("text",)]
    if format == "alpaca":
        extra = record.get("input")
        return [("instruction",)] + ([("input",)] if isinstance(extra, str) and extra.strip() else [])
    if format == "prompt_completion":
        prompt = record.get("prompt")
        return [("prompt",)] if isinstance(prompt, str) else _user_turns(prompt, "prompt")
    if format == "chat":
        return _user_turns(record.get("messages"), "messages")
    raise UserError(
        f"augmentation needs rows with an input and a label/output; format {format!r} has no input side "
        "(use text_label, alpaca, prompt_completion or chat rows)"
    )


def get_text(record: dict[str, Any], path: FieldPath) -> str:
    """The string at `path`."""
    node: Any = record
    for key in path:
        node = node[key]
    return node


def with_texts(record: dict[str, Any], paths: Sequence[FieldPath], texts: Sequence[str]) -> dict[str, Any]:
    """A deep copy of `record` with the string at each path replaced; the original row is left as it was."""
    new = copy.deepcopy(record)
    for path, text in zip(paths, texts, strict=True):
        node: Any = new
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = text
    return new
