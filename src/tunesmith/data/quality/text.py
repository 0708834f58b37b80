"""The texts that duplicate and leakage checks compare: normalised views of an example.

Each example is seen three ways: its *input* (the prompt side), its *output* (the trained answer) and the
*whole* example. System turns are left out of all three: a system prompt shared by every row (or added by
`data.system_prompt`) would make unrelated rows look alike.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from tunesmith.data.example import Example

_NOT_WORD = re.compile(r"[^\w\s]+")


def normalize(text: str) -> str:
    """Fold case, Unicode forms, punctuation and whitespace, so trivially different copies compare equal.

    Punctuation becomes a space rather than vanishing, so "it's" and "it 's" (tokenized text) agree.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NOT_WORD.sub(" ", folded).split())


@dataclass(frozen=True)
class Views:
    """Normalised input, output and whole text of one example (output is None for raw text)."""

    input: str
    output: str | None
    whole: str


def views(example: Example) -> Views:
    """The normalised views of `example`; for raw text the input and the whole are the text itself."""
    if example.text is not None:
        text = normalize(example.text)
        return Views(text, None, text)
    prompt = [turn["content"] for turn in example.prompt_messages if turn["role"] != "system"]
    turns = [turn["content"] for turn in example.messages if turn["role"] != "system"]
    target = example.target
    return Views(
        normalize("\n".join(prompt)),
        normalize(target) if target is not None else None,
        normalize("\n".join(turns)),
    )


def all_views(examples: Sequence[Example]) -> list[Views]:
    """`views` for every example, in order."""
    return [views(example) for example in examples]
