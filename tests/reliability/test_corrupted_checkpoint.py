"""Scenario 5, a corrupted or truncated checkpoint: resume verifies the checksums recorded at save time, sets the
damaged checkpoint aside with one warning line and continues from the newest intact one, ending exactly where an
uninterrupted run ends. With no intact checkpoint left, it fails clearly."""

from __future__ import annotations

import json

import pytest
import torch
from reliability_helpers import cli, last_error_line, tiny_sets, train_tiny
from safetensors.torch import load_file

from tunesmith.config import load_config
from tunesmith.errors import UserError
from tunesmith.recipes.train import run_train
from tunesmith.train.checkpoint import STATE, WEIGHTS, complete_checkpoints

pytestmark = pytest.mark.integration
STEPS = ["train.save_every=2", "train.eval_every=2", "train.keep_checkpoints=3"]


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_newest_checkpoint_falls_back_to_the_previous(tiny_model_dir, qa_data, tmp_path, capsys):
    straight = train_tiny(tiny_model_dir, qa_data, tmp_path, "straight", "train.max_steps=6", *STEPS)

    def stop_after_step_4(state):
        if state.step == 4:
            raise RuntimeError("the machine went away")

    cfg = load_config(None, tiny_sets(tiny_model_dir, qa_data, tmp_path, "damaged", "train.max_steps=6", *STEPS))
    with pytest.raises(RuntimeError, match="went away"):
        run_train(cfg, hooks=[stop_after_step_4])
    run = tmp_path / "damaged"
    newest = complete_checkpoints(run / "checkpoints")[-1]
    assert newest.name == "step-0000004" and "files" in json.loads((newest / STATE).read_text())
    _truncate(newest / WEIGHTS)
    capsys.readouterr()
    train_tiny(tiny_model_dir, qa_data, tmp_path, "damaged", "train.max_steps=6", *STEPS, resume=True)
    err = " ".join(capsys.readouterr().err.split())  # rich wraps at the terminal width
    assert "warning: damaged checkpoint step-0000004: trainable.safetensors does not match its checksum" in err
    assert "resuming" in err and "from step-0000002" in err
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("damaged-step-0000004")]
    final = complete_checkpoints(run / "checkpoints")[-1]
    want = load_file(complete_checkpoints(straight / "checkpoints")[-1] / WEIGHTS)
    got = load_file(final / WEIGHTS)
    assert final.name == "step-0000006" and all(torch.equal(got[k], want[k]) for k in want)


def test_unreadable_state_is_damage_too(tiny_model_dir, qa_data, tmp_path):
    run = train_tiny(tiny_model_dir, qa_data, tmp_path, "state", "train.max_steps=4", *STEPS)
    (complete_checkpoints(run / "checkpoints")[-1] / STATE).write_text('{"train_state": ')
    train_tiny(tiny_model_dir, qa_data, tmp_path, "state", "train.max_steps=4", *STEPS, resume=True)
    assert json.loads((run / "status.json").read_text())["status"] == "completed"


def test_every_checkpoint_damaged_fails_clearly(tiny_model_dir, qa_data, tmp_path, sets_for):
    run = train_tiny(tiny_model_dir, qa_data, tmp_path / "runs", "all", "train.max_steps=4", *STEPS)
    for checkpoint in complete_checkpoints(run / "checkpoints"):
        _truncate(checkpoint / WEIGHTS)
    with pytest.raises(UserError, match="every checkpoint is damaged"):
        train_tiny(tiny_model_dir, qa_data, tmp_path / "runs", "all", "train.max_steps=4", *STEPS, resume=True)
    result = cli("resume", str(run))
    assert result.returncode == 2 and "every checkpoint is damaged" in last_error_line(result)
