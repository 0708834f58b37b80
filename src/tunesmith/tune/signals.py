"""SIGTERM/SIGINT over a whole study, not only inside a trial's training.

While a trial trains, the training recipe's own handlers run (finish the step, checkpoint, exit). Everywhere else
(sampling, the study database, between trials) a first signal is remembered and the study stops at the next safe
point: before the next trial trains, or after the trial in progress is recorded. A second signal stops at once.
Either way the tuner exits 128 + the first signal's number, never by the signal's default action.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from tunesmith.errors import TrainingInterrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StudyStop:
    """Context manager: installs the study-wide handlers on the main thread and restores the previous ones.
    `forward` receives each signal too (the parent of `--jobs` workers passes it on to them)."""

    def __init__(self, forward: Callable[[int], None] | None = None) -> None:
        self.signum: int | None = None
        self.forward = forward
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StudyStop:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        if self.forward is not None:
            self.forward(signum)
        if self.signum is None:
            self.signum = signum
            return
        raise TrainingInterrupted(0, None, exit_code=128 + self.signum, at_once=True)

    def check(self) -> None:
        """Raise TrainingInterrupted if a signal arrived: called at the study's safe points."""
        if self.signum is not None:
            raise TrainingInterrupted(0, None, exit_code=128 + self.signum)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
