"""The data formats, registered one line each.

Registration order is the auto-detection order: the most specific layout comes first.
"""

from __future__ import annotations

from tunesmith.data.formats.alpaca import ALPACA
from tunesmith.data.formats.base import Format, RowError
from tunesmith.data.formats.chat import CHAT
from tunesmith.data.formats.preference import PREFERENCE
from tunesmith.data.formats.prompt_completion import PROMPT_COMPLETION
from tunesmith.data.formats.text import TEXT
from tunesmith.data.formats.text_label import TEXT_LABEL
from tunesmith.data.formats.tokens_tags import TOKENS_TAGS
from tunesmith.registry import add_unique

__all__ = ["FORMATS", "Format", "RowError", "register"]

FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add `fmt` to `FORMATS`; a name that is already taken is a bug and raises ValueError."""
    return add_unique(FORMATS, fmt.name, fmt, "data format")


register(CHAT)
register(ALPACA)
register(PREFERENCE)
register(PROMPT_COMPLETION)
register(TEXT_LABEL)
register(TOKENS_TAGS)
register(TEXT)
