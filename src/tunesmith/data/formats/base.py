"""What a data format is, the row error it raises, and small checks shared by the format files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunesmith.data.example import ROLES, Example

Converter = Callable[[dict[str, Any], int, str | None], Example]


class RowError(Exception):
    """A row that cannot become an `Example`. `code` is a stable error code, `problem` a one-line reason."""

    def __init__(self, code: str, problem: str):
        self.code, self.problem = code, problem
        super().__init__(f"{problem} [{code}]")


@dataclass(frozen=True)
class Format:
    """A named row layout and the function that turns one of its rows into an `Example`.

    Attributes:
        name: the name users put in `data.format`.
        fields: required field names; auto-detection picks the format when these are present.
        optional: field names that may be absent.
        convert: `(record, line, system_prompt) -> Example`; raises `RowError` on a bad row.
        shape: how the fields are shown to users, e.g. "{instruction, input?, output}"; derived when empty.
    """

    name: str
    fields: tuple[str, ...]
    optional: tuple[str, ...]
    convert: Converter = field(repr=False)
    shape: str = ""

    def to_example(self, record: dict[str, Any], line: int, system_prompt: str | None = None) -> Example:
        """Convert one row; raises `RowError(code, problem)` when the row does not fit this format."""
        return self.convert(record, line, system_prompt)

    def describe(self) -> str:
        """Name and fields for messages, e.g. "alpaca {instruction, input?, output}"."""
        shape = self.shape or "{" + ", ".join([*self.fields, *(f"{name}?" for name in self.optional)]) + "}"
        return f"{self.name} {shape}"


def type_name(value: object) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def check_text(value: object, where: str, allow_empty: bool = False) -> str:
    """Return `value` if it is a usable string; raise `RowError` for wrong type, empty or unencodable text."""
    if not isinstance(value, str):
        raise RowError("wrong_type", f"{where} must be a string, got {type_name(value)}")
    if not allow_empty and not value.strip():
        raise RowError("empty_field", f"{where} is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RowError("invalid_encoding", f"{where} contains an unpaired surrogate (\\ud800-\\udfff)") from None
    return value


def require(record: dict[str, Any], key: str) -> object:
    """Return `record[key]`; a missing or null field raises `RowError("missing_field")`."""
    value = record.get(key)
    if value is None:
        found = ", ".join(show_name(name) for name in list(record)[:8]) or "none"
        raise RowError("missing_field", f"missing field '{key}' (fields in this row: {found})")
    return value


def require_text(record: dict[str, Any], key: str) -> str:
    """Return the required, non-empty string field `key`."""
    return check_text(require(record, key), f"field '{key}'")


def show_name(name: object, limit: int = 40) -> str:
    """A field name made safe for a one-line message: printable and at most `limit` characters."""
    text = name if isinstance(name, str) and name.isprintable() else repr(name)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_messages(value: object, key: str) -> list[dict[str, str]]:
    """Validate a list of `{role, content}` turns from field `key`; return clean copies (role and content only)."""
    if not isinstance(value, list):
        raise RowError(
            "wrong_type", f"field '{key}' must be a list of {{role, content}} objects, got {type_name(value)}"
        )
    if not value:
        raise RowError("empty_field", f"field '{key}' is an empty list")
    turns = []
    for index, turn in enumerate(value):
        where = f"{key}[{index}]"
        if not isinstance(turn, dict):
            raise RowError("wrong_type", f"{where} must be an object with role and content, got {type_name(turn)}")
        for part in ("role", "content"):
            if turn.get(part) is None:
                raise RowError("missing_field", f"{where} has no '{part}'")
        role = turn["role"]
        if not isinstance(role, str):
            raise RowError("wrong_type", f"{where}.role must be a string, got {type_name(role)}")
        if role not in ROLES:
            raise RowError("unknown_role", f"{where} has role {show_name(role)!r}; use one of {', '.join(ROLES)}")
        turns.append({"role": role, "content": check_text(turn["content"], f"{where}.content")})
    return turns


def with_system(turns: list[dict[str, str]], system_prompt: str | None) -> list[dict[str, str]]:
    """Prepend `system_prompt` as a system turn unless it is None or the turns already have a system turn."""
    if system_prompt is None or any(turn["role"] == "system" for turn in turns):
        return turns
    return [{"role": "system", "content": system_prompt}, *turns]


def chat_example(line: int, turns: list[dict[str, str]], system_prompt: str | None) -> Example:
    """Build a chat `Example`, requiring at least one assistant turn."""
    if not any(turn["role"] == "assistant" for turn in turns):
        raise RowError("no_assistant_turn", "no assistant turn to train on")
    return Example(line=line, messages=tuple(with_system(turns, system_prompt)))


def single_turn(line: int, user: str, assistant: str, system_prompt: str | None) -> Example:
    """Build a one-question, one-answer chat `Example`."""
    turns = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return Example(line=line, messages=tuple(with_system(turns, system_prompt)))
