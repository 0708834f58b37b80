"""Training progress on stderr: a live bar on a terminal, plain lines anywhere else (CI, nohup, a log file).

A rich bar only draws on a terminal; redirected, it printed nothing until training ended. `PlainProgress` prints
one line every `every` steps or `seconds` of wall time, whichever comes first, and always the last step:
`step 12/40 · loss 1.234 · val 1.100 · 412 tok/s · 0:00:31 elapsed · ETA 0:01:30`.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

PLAIN_LINES = 20  # about this many lines a run, at most one per step
PLAIN_SECONDS = 30.0


class StepProgress(Protocol):
    def __enter__(self) -> StepProgress: ...

    def __exit__(self, *exc: object) -> None: ...

    def start(self, total: int, completed: int) -> None: ...

    def update(self, completed: int, loss: str, tps: str, val: str | None = None) -> None: ...


class BarProgress:
    """rich's live bar, for a terminal."""

    def __init__(self, console: Console) -> None:
        self._bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val {task.fields[val]}"),
            TextColumn("{task.fields[tps]} tok/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task: Any = None

    def __enter__(self) -> BarProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)

    def start(self, total: int, completed: int) -> None:
        self._task = self._bar.add_task("train", total=total, completed=completed, loss="-", val="-", tps="-")

    def update(self, completed: int, loss: str, tps: str, val: str | None = None) -> None:
        self._bar.update(self._task, completed=completed, loss=loss, tps=tps, **({"val": val} if val else {}))


class PlainProgress:
    """A line every `every` steps or `seconds`, for logs; the ETA is from this process's own steps."""

    def __init__(self, console: Console, every: int | None = None, seconds: float = PLAIN_SECONDS) -> None:
        self._console, self._every, self._seconds = console, every, seconds
        self._total = self._first = 0
        self._started = self._last_line = time.monotonic()
        self._val = "-"

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def start(self, total: int, completed: int) -> None:
        self._total, self._first = total, completed
        self._every = self._every or max(1, total // PLAIN_LINES)
        self._started = self._last_line = time.monotonic()

    def update(self, completed: int, loss: str, tps: str, val: str | None = None) -> None:
        self._val = val or self._val
        now = time.monotonic()
        due = completed % (self._every or 1) == 0 or now - self._last_line >= self._seconds
        if not (due or completed >= self._total):
            return
        self._last_line = now
        elapsed = now - self._started
        done = completed - self._first
        eta = elapsed / done * (self._total - completed) if done > 0 else None
        self._console.print(
            f"step {completed}/{self._total} · loss {loss} · val {self._val} · {tps} tok/s · "
            f"{_clock(elapsed)} elapsed · ETA {_clock(eta) if eta is not None else '-'}",
            highlight=False,
            soft_wrap=True,
        )


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def step_progress(console: Console) -> StepProgress:
    """The live bar on a terminal, plain lines otherwise."""
    return BarProgress(console) if console.is_terminal else PlainProgress(console)
