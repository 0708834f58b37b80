"""Plain-dict registries: one line registers a component; a name registered twice is a bug."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def add_unique(table: dict[str, T], name: str, item: T, what: str) -> T:
    """Put `item` in `table` under `name`, raising ValueError when the name is taken."""
    if name in table:
        raise ValueError(f"{what} {name!r} is already registered")
    table[name] = item
    return item
