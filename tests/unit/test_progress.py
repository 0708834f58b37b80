"""Plain progress lines for output that is not a terminal: every N steps or every 30 s, and always the last."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tunesmith.train import progress
from tunesmith.train.progress import BarProgress, PlainProgress, step_progress

pytestmark = pytest.mark.unit


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=200, force_terminal=False), buffer


def test_a_line_every_n_steps_and_the_last_one():
    console, buffer = _console()
    with PlainProgress(console, every=3) as bar:
        bar.start(total=10, completed=0)
        for step in range(1, 11):
            bar.update(step, f"{1 / step:.3f}", "400", "1.500" if step == 6 else None)
    lines = buffer.getvalue().splitlines()
    assert [line.split(" · ")[0] for line in lines] == ["step 3/10", "step 6/10", "step 9/10", "step 10/10"]
    assert "val 1.500" in lines[-1] and "400 tok/s" in lines[-1] and "ETA 0:00:00" in lines[-1]


def test_a_line_after_the_time_limit_even_between_steps(monkeypatch):
    clock = iter([0.0, 0.0, 5.0, 31.0, 32.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    console, buffer = _console()
    bar = PlainProgress(console, every=100, seconds=30)
    bar.start(total=1000, completed=500)  # a resumed run: the ETA counts this process's steps only
    bar.update(501, "1.000", "10")  # 5 s: not yet
    bar.update(502, "0.900", "10")  # 31 s: due
    (line,) = buffer.getvalue().splitlines()
    # 31 s for 2 steps: 15.5 s a step, 498 steps to go
    assert line.startswith("step 502/1000") and "0:00:31 elapsed" in line and "ETA 2:08:39" in line


def test_terminal_gets_the_live_bar():
    assert isinstance(step_progress(Console(file=io.StringIO(), force_terminal=True)), BarProgress)
    assert isinstance(step_progress(Console(file=io.StringIO(), force_terminal=False)), PlainProgress)
