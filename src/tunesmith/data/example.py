"""The training example: one row of user data, converted to chat turns or raw text.

Every data format (see `tunesmith.data.formats`) turns its rows into `Example`s, and everything downstream
(templates, tokenization, evaluation) reads only `Example`s.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Example:
    """One training example.

    Attributes:
        line: 1-based source line (JSONL/CSV/TSV: the file line where the row starts; JSON array and Parquet:
            the 1-based row index).
        messages: chat turns `{"role": "system"|"user"|"assistant", "content": str}`. Assistant turns are the
            trained targets.
        text: raw text for continued pre-training (every token is trained).
        rejected: preference rows (`dpo`): the answer judged worse than the last assistant turn (the chosen one).

    Exactly one of `messages` and `text` is set.
    """

    line: int
    messages: tuple[dict[str, str], ...] = ()
    text: str | None = None
    rejected: str | None = None

    def __post_init__(self) -> None:
        if bool(self.messages) == (self.text is not None):
            raise ValueError("Example needs exactly one of `messages` (non-empty) and `text`")
        if self.rejected is not None and self.target is None:
            raise ValueError("a preference Example needs an assistant turn (the chosen answer) beside `rejected`")

    @property
    def rejected_messages(self) -> tuple[dict[str, str], ...]:
        """The conversation with the rejected answer in place of the chosen one (preference rows only)."""
        if self.rejected is None:
            raise ValueError("not a preference example")
        return (*self.prompt_messages, {"role": "assistant", "content": self.rejected})

    @property
    def target(self) -> str | None:
        """Content of the last assistant turn (the reference answer for exact-match eval); None for text."""
        index = self._last_assistant()
        return None if index is None else self.messages[index]["content"]

    @property
    def prompt_messages(self) -> tuple[dict[str, str], ...]:
        """The turns before the last assistant turn: what a model is given when generating the target."""
        index = self._last_assistant()
        return self.messages if index is None else self.messages[:index]

    def _last_assistant(self) -> int | None:
        """Index of the last assistant turn, or None when there is none."""
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index].get("role") == "assistant":
                return index
        return None
