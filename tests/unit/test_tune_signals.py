"""The study-wide signal handler: a first signal is remembered and stops the study at its next safe point, a
second stops at once, both with exit 128 + the first signal; the handlers in place before are restored."""

from __future__ import annotations

import os
import signal

import pytest

from tunesmith.errors import TrainingInterrupted
from tunesmith.tune.signals import StudyStop


def test_a_first_signal_is_remembered_until_the_next_safe_point():
    with StudyStop() as stop:
        stop.check()  # nothing arrived yet
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        with pytest.raises(TrainingInterrupted) as raised:
            stop.check()
    assert raised.value.exit_code == 143 and not raised.value.at_once


def test_a_second_signal_stops_at_once_with_the_first_signals_code():
    with StudyStop() as stop, pytest.raises(TrainingInterrupted) as raised:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    assert stop.signum == signal.SIGTERM
    assert raised.value.exit_code == 143 and raised.value.at_once


def test_each_signal_is_passed_on_and_the_previous_handlers_come_back():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    passed: list[int] = []
    with StudyStop(passed.append):
        os.kill(os.getpid(), signal.SIGINT)
    assert passed == [signal.SIGINT]
    assert {sig: signal.getsignal(sig) for sig in before} == before
