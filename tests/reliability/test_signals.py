"""Scenario 3 of RELIABILITY.md, SIGTERM/SIGINT, through the real console script during training.

The signal is delivered at a known point: the process is frozen (SIGSTOP) once metrics.jsonl shows step S, the
signal(s) sent, then the process continued (SIGCONT). So the step in progress is S+1 (or S, when the freeze came
after S's row but before its end), and "checkpointed within one step" can be asserted exactly.

- First signal: exit 128+signum (143 for SIGTERM, 130 for SIGINT, docs/training.md), a complete checkpoint of the
  step it stopped at (S or S+1), no step trained after it, status.json `interrupted` with that step, stderr says
  how to continue and has no traceback; `tunesmith resume RUN` completes.
- Second signal right after the first (SIGTERM then SIGINT, both pending when the process continues): exit 130
  at once (no checkpoint is written for the step in progress), every complete checkpoint byte-identical, and
  `--resume` completes from the newest one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.integration
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))
SETTINGS = [
    "train.epochs=7",  # 36 training rows, batch 4: 9 steps an epoch
    "train.max_steps=60",
    "train.batch_size=4",
    "train.eval_every=25",
    "train.keep_checkpoints=100",
    "train.precision=fp32",
    "train.lr=5e-3",
    "data.max_length=64",
]


@pytest.fixture
def workdir(tmp_path: Path, tiny_model_dir: Path) -> tuple[Path, list[str]]:
    rows = [{"prompt": f"Say the number {i % 7}.", "completion": f"The number is {i % 7}."} for i in range(40)]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "run.yaml").write_text("{}\n")
    sets = [f"model.name={tiny_model_dir}", f"data.train={tmp_path / 'qa.jsonl'}", f"run.output_dir={tmp_path}"]
    return tmp_path, [*sets, "run.name=sig", *SETTINGS]


def cli(*args: str, sets: list[str], wait: bool = True, log: Path | None = None):
    cmd = [TUNESMITH, *args, *(x for s in sets for x in ("--set", s))]
    env = {**os.environ, "TUNESMITH_ALLOCATOR": "system"}
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert log is not None
    with log.open("w") as err:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)


def resumed_from(stderr: str) -> str | None:
    """The checkpoint named by the "resuming RUN from step-N" line (rich wraps it at the terminal width)."""
    found = re.search(r"resuming\s.*?\sfrom\s+(step-\d{7}|the\s+start)", stderr, re.S)
    return " ".join(found.group(1).split()) if found else None


def train_steps(run: Path) -> list[int]:
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    steps = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:  # a row being written
            continue
        if "train_loss" in row:
            steps.append(row["step"])
    return steps


def freeze_at_step(proc: subprocess.Popen, run: Path, step: int) -> int:
    """Let training reach `step`, then SIGSTOP the process; returns the last step logged when frozen."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and max(train_steps(run), default=0) < step and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "training ended before the signal"
    proc.send_signal(signal.SIGSTOP)
    time.sleep(0.2)  # a row being written when the process stopped is complete by now (or never will be)
    return max(train_steps(run))


def sha256_tree(checkpoints: Path) -> dict[str, str]:
    complete = [c for c in checkpoints.glob("step-*") if (c / "state.json").is_file()]
    return {f"{c.name}/{f.name}": hashlib.sha256(f.read_bytes()).hexdigest() for c in complete for f in c.iterdir()}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_checkpoints_the_current_step_and_resume_completes(signum, workdir):
    folder, sets = workdir
    run = folder / "sig"
    proc = cli("train", str(folder / "run.yaml"), sets=[*sets, "train.save_every=50"], wait=False, log=folder / "err")
    frozen = freeze_at_step(proc, run, 3)
    proc.send_signal(signum)
    proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=60) == 128 + signum
    stderr = (folder / "err").read_text()

    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted", status
    step = status["step"]
    assert step in (frozen, frozen + 1), f"frozen at step {frozen}, checkpointed step {step}"
    assert max(train_steps(run)) == step, "a step was trained after the signal"
    checkpoint = run / "checkpoints" / f"step-{step:07d}"
    assert Path(status["checkpoint"]).resolve() == checkpoint.resolve()
    assert json.loads((checkpoint / "state.json").read_text())["train_state"]["step"] == step
    for tensors in checkpoint.glob("*.safetensors"):
        load_file(tensors)
    flat = " ".join(stderr.split())  # rich wraps long lines
    assert f"interrupted at step {step}" in flat and "--resume" in flat, stderr
    assert "Traceback" not in stderr
    assert not list((run / "checkpoints").glob(".staging-*"))

    resumed = cli("resume", str(run), sets=[])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed_from(resumed.stderr) == f"step-{step:07d}", resumed.stderr
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert json.loads((run / "summary.json").read_text())["steps"] == 60


@pytest.fixture(scope="module")
def double_signal(tiny_model_dir, tmp_path_factory) -> dict:
    """SIGTERM then SIGINT to a frozen training process, then SIGCONT; what happened, then a --resume."""
    folder = tmp_path_factory.mktemp("double-signal")
    rows = [{"prompt": f"Say the number {i % 7}.", "completion": f"The number is {i % 7}."} for i in range(40)]
    (folder / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "run.yaml").write_text("{}\n")
    sets = [f"model.name={tiny_model_dir}", f"data.train={folder / 'qa.jsonl'}", f"run.output_dir={folder}"]
    sets = [*sets, "run.name=sig", *SETTINGS, "train.save_every=2"]
    run = folder / "sig"
    proc = cli("train", str(folder / "run.yaml"), sets=sets, wait=False, log=folder / "err")
    frozen = freeze_at_step(proc, run, 7)
    before = sha256_tree(run / "checkpoints")
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)  # a second, different signal, so the kernel does not merge the two
    proc.send_signal(signal.SIGCONT)
    started = time.monotonic()
    code = proc.wait(timeout=60)
    seconds = time.monotonic() - started
    facts = {
        "run": run,
        "frozen": frozen,
        "before": before,
        "code": code,
        "seconds": seconds,
        "stderr": (folder / "err").read_text(),
        "after": sha256_tree(run / "checkpoints"),
        "last_step": max(train_steps(run)),
        "status": json.loads((run / "status.json").read_text()),
    }
    facts["resumed"] = cli("train", str(folder / "run.yaml"), "--resume", sets=sets)
    return facts


def test_second_signal_exits_at_once_without_corrupting_checkpoints(double_signal):
    facts = double_signal
    before, run = facts["before"], facts["run"]
    assert before, "no complete checkpoint to protect yet"
    assert facts["code"] == 130, facts["stderr"][-2000:]
    assert facts["seconds"] < 10
    assert "Traceback" not in facts["stderr"], facts["stderr"]
    assert facts["after"] == before, "a complete checkpoint changed, or the step in progress was still checkpointed"
    assert facts["last_step"] <= facts["frozen"] + 1
    assert facts["status"]["status"] in ("interrupted", "failed"), facts["status"]

    resumed = facts["resumed"]
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    newest = max(name.split("/")[0] for name in before)
    assert resumed_from(resumed.stderr) == newest, resumed.stderr
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert not list((run / "checkpoints").glob(".staging-*"))
    for name, digest in before.items():  # the resume may rotate none (keep 100) and must rewrite none
        assert hashlib.sha256((run / "checkpoints" / name).read_bytes()).hexdigest() == digest


def test_second_signal_leaves_the_run_marked_interrupted(double_signal):
    assert double_signal["status"]["status"] == "interrupted", double_signal["status"]


def test_signal_after_the_last_step_exits_128_plus_signal_and_resume_finishes_the_export(workdir):
    """Frozen once the export has begun (after the loop's own handler is gone): the signal is never the
    default action (killed, no status): exit 143, and `resume` exports from the final checkpoint."""
    folder, sets = workdir
    run = folder / "sig"
    proc = cli("train", str(folder / "run.yaml"), sets=[*sets, "train.save_every=50"], wait=False, log=folder / "err")
    deadline = time.monotonic() + 120
    while proc.poll() is None and not (run / "adapter").exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert proc.poll() is None, "the run ended before the export began"
    proc.send_signal(signal.SIGSTOP)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    code = proc.wait(timeout=60)
    stderr = (folder / "err").read_text()
    assert code == 143, stderr[-2000:]
    assert "Traceback" not in stderr
    assert json.loads((run / "status.json").read_text())["status"] == "interrupted"
    resumed = cli("resume", str(run), sets=[])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert json.loads((run / "summary.json").read_text())["steps"] == 60
