"""kill -9 at every crash point of a checkpoint save: resume always works and ends bit-identical."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.config import load_config
from tunesmith.recipes import train as recipe
from tunesmith.train.checkpoint import CRASH_POINTS, STATE, WEIGHTS, complete_checkpoints

pytestmark = pytest.mark.integration
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))
SETTINGS = [
    "train.max_steps=6",
    "train.save_every=2",
    "train.eval_every=3",
    "train.keep_checkpoints=1",
    "train.batch_size=4",
    "train.precision=fp32",
    "train.lr=5e-3",
    "data.max_length=64",
]


def sets(model_dir: Path, data: Path, out: Path, name: str) -> list[str]:
    return [f"model.name={model_dir}", f"data.train={data}", f"run.output_dir={out}", f"run.name={name}", *SETTINGS]


@pytest.fixture(scope="module")
def straight(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("straight")
    data = tmp / "qa.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": f"Say the number {i % 7}.", "completion": f"The number is {i % 7}."}) + "\n"
            for i in range(40)
        )
    )
    run = recipe.run_train(load_config(None, sets(tiny_model_dir, data, tmp, "straight"))).path
    return data, load_file(complete_checkpoints(run / "checkpoints")[-1] / WEIGHTS)


def train_in_subprocess(
    cfg_path: Path, args: list[str], env: dict[str, str] | None = None, resume: bool = False
) -> subprocess.CompletedProcess:
    cmd = [TUNESMITH, "train", str(cfg_path), *(["--resume"] if resume else [])]
    cmd += [x for a in args for x in ("--set", a)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill9_while_saving_then_resume(point, straight, tiny_model_dir, tmp_path):
    data, expected = straight
    cfg = tmp_path / "run.yaml"
    cfg.write_text("{}\n")
    args = sets(tiny_model_dir, data, tmp_path, "crashy")
    killed = train_in_subprocess(cfg, args, env={"TUNESMITH_CRASH_AT": f"{point}@4"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    checkpoints = tmp_path / "crashy" / "checkpoints"
    for complete in complete_checkpoints(checkpoints):  # whatever is visible as complete really is complete
        json.loads((complete / STATE).read_text())
        load_file(complete / WEIGHTS)
    if point == CRASH_POINTS[0]:
        rerun = train_in_subprocess(cfg, args)
        assert rerun.returncode == 2 and "--resume" in rerun.stderr  # a plain re-run refuses to overwrite the run
    resumed = train_in_subprocess(cfg, args, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]  # --resume finishes it
    assert not list(checkpoints.glob(".staging-*")) and not list(checkpoints.glob(".removing-*"))
    final = load_file(complete_checkpoints(checkpoints)[-1] / WEIGHTS)
    assert final.keys() == expected.keys()
    assert all(torch.equal(final[k], expected[k]) for k in final)
