"""User-facing errors.

A `UserError` is a mistake the user can fix (bad file, bad key, unknown model). The CLI prints its message as
one line and exits non-zero, without a stack trace. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A one-line, actionable error caused by user input."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(message.split("\n")))


class DataError(UserError):
    """A problem in a data file, located by file and 1-based line."""

    def __init__(self, path: object, line: int | None, problem: str, code: str = "invalid"):
        self.path, self.line, self.problem, self.code = str(path), line, problem, code
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem} [{code}]")


class TrainingInterrupted(Exception):
    """Training stopped on a signal; the CLI exits with `exit_code`. `checkpoint` is where a resume starts (None:
    from the beginning); `at_once` when a second signal stopped mid-step (nothing new was saved)."""

    def __init__(self, step: int, checkpoint: str | None, exit_code: int = 130, at_once: bool = False):
        self.step, self.checkpoint, self.exit_code, self.at_once = step, checkpoint, exit_code, at_once
        super().__init__(f"interrupted at step {step}; checkpoint: {checkpoint}")


class NonFiniteLossError(UserError):
    """The loss became NaN or Inf; the run stops and says at which step."""

    exit_code = 3


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean "x"?' for the closest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f' Did you mean "{match[0]}"?' if match else ""
