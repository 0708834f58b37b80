"""SIGTERM/SIGINT before the training loop (issue 15, defect 5): during setup or the base evaluation the command
stops at once with exit 128+signal and one message, and the run folder says `interrupted`, never `running`
forever. (Signals during the loop: test_signals.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from reliability_helpers import tiny_sets

pytestmark = pytest.mark.integration

# The real CLI, with a signal sent to itself while the base model is being evaluated (before the loop starts).
SIGNAL_IN_BASE_EVAL = """
import os, signal, sys
from tunesmith.cli import main
from tunesmith.train import loop
real = loop.evaluate_loss
def evaluate_loss(*args, **kwargs):
    os.kill(os.getpid(), int(os.environ["SEND_SIGNAL"]))
    return real(*args, **kwargs)
loop.evaluate_loss = evaluate_loss
sys.argv = ["tunesmith", *sys.argv[1:]]
main.main()
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_base_evaluation(signum, tiny_model_dir, qa_data, tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text("train:\n  max_steps: 4\n")
    sets = [x for a in tiny_sets(tiny_model_dir, qa_data, tmp_path / "runs", "early") for x in ("--set", a)]
    env = {**os.environ, "SEND_SIGNAL": str(int(signum)), "TUNESMITH_ALLOCATOR": "system"}
    command = [sys.executable, "-c", SIGNAL_IN_BASE_EVAL, "train", str(config), *sets]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 128 + signum, result.stderr
    assert "interrupted before training began" in result.stderr and "Traceback" not in result.stderr
    status = json.loads((tmp_path / "runs" / "early" / "status.json").read_text())
    assert status["status"] == "interrupted" and status["step"] == 0
    resumed = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli.main", "train", str(config), "--resume", *sets],
        env={**env, "SEND_SIGNAL": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "runs" / "early" / "status.json").read_text())["status"] == "completed"
