"""Resume with a changed config (issue 15, defect 3): a change to what a step computes is refused with the diff
of every changed key, before anything loads; keys that are safe to change are all applied and recorded."""

from __future__ import annotations

import json

import pytest
import yaml
from reliability_helpers import cli, one_error_line

pytestmark = pytest.mark.integration


@pytest.fixture
def stopped_run(tmp_path, sets_for):
    result = cli("train", *sets_for("r", "train.max_steps=2", "train.save_every=2"))
    assert result.returncode == 0, result.stderr
    return tmp_path / "runs" / "r"


def test_changed_lr_batch_size_and_rank_are_refused_with_the_diff(stopped_run, sets_for):
    before = (stopped_run / "config.yaml").read_text()
    args = sets_for("r", "train.max_steps=2", "train.save_every=2", "train.lr=1e-3", "train.batch_size=2")
    result = cli("train", "--resume", *args, "--set", "method.r=8")
    line = one_error_line(result)
    assert result.returncode == 2 and "cannot resume" in line
    assert "train.batch_size 4 -> 2" in line and "method.r 16 -> 8" in line and "train.lr 0.005 -> 0.001" in line
    assert (stopped_run / "config.yaml").read_text() == before
    assert not (stopped_run / "resumes.json").exists()


def test_safe_keys_are_applied_and_recorded(stopped_run, sets_for):
    args = sets_for("r", "train.max_steps=4", "train.save_every=2", "train.eval_every=1")
    result = cli("train", "--resume", *args)
    assert result.returncode == 0, result.stderr
    assert "resume changes train.max_steps: 2 -> 4" in result.stderr
    config = yaml.safe_load((stopped_run / "config.yaml").read_text())
    assert config["train"]["max_steps"] == 4 and config["train"]["eval_every"] == 1
    (entry,) = json.loads((stopped_run / "resumes.json").read_text())["resumes"]
    assert entry["from_step"] == 2 and entry["changed"]["train.max_steps"] == {"from": 2, "to": 4}
    assert json.loads((stopped_run / "summary.json").read_text())["steps"] == 4
