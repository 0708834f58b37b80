"""Scenario 2 of RELIABILITY.md: kill -9 at every crash point of a save, and at 20 random points in time.

Everything runs through the real console script (`tunesmith train`, then `tunesmith train --resume`), killed
with SIGKILL, on the tiny model (one torch thread per process, so the two random chains run side by side).

- Crash points: one run is killed at each of the six crash points of `save_checkpoint` in turn
  (`TUNESMITH_CRASH_AT`, weights@2 .. mid_rotate@10, after_rotate@12), each kill followed by a `--resume` that is
  the next victim; the seventh process finishes. 6 kill points.
- Random points: two chains of 10 processes each; each process is SIGKILLed after a seeded random delay of
  0-0.25 s (0-20 steps of the tiny model) once its training has visibly started (a new row in metrics.jsonl);
  the next process of the chain is the `--resume` of the killed one, and a last `--resume` finishes each chain
  (300 steps, save_every 2). 20 kill points, all during training; in the measured runs 2-8 of them landed
  inside a checkpoint save (a staging folder was left behind) and the chains got to steps 106-135 of 300.

After every kill: each checkpoint that looks complete (has state.json) loads; every complete checkpoint that
existed before the process started and still exists is byte-identical (SHA-256 of every file); the newest one
is only ever removed by rotation after a newer one is complete; the next process says it resumes from exactly
the newest complete checkpoint. After the final resume: exit 0, status completed, no `.staging-*` or
`.removing-*` folder (a rotation killed midway renames before it deletes), and
the last checkpoint (weights, optimizer, RNG), best/ and the export are bit-identical to an uninterrupted run.
Kill points tried: 26; survived: 26 (the bit-identical end states prove every intermediate resume was exact).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.config import load_config
from tunesmith.recipes.train import run_train
from tunesmith.train.checkpoint import CRASH_POINTS, complete_checkpoints

pytestmark = pytest.mark.integration
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))
COMMON = [
    "train.batch_size=4",
    "train.threads=1",
    "train.precision=fp32",
    "train.lr=5e-3",
    "data.max_length=64",
    "eval.batch_size=8",
]
# 36 training rows, batch 4: 9 steps an epoch.
CRASH_CHAIN = [*COMMON, "train.epochs=2", "train.max_steps=14", "train.save_every=2", "train.keep_checkpoints=2",
               "train.eval_every=3"]  # fmt: skip
RANDOM_CHAIN = [*COMMON, "train.epochs=34", "train.max_steps=300", "train.save_every=2", "train.keep_checkpoints=3",
                "train.eval_every=10"]  # fmt: skip
RANDOM_KILLS_PER_CHAIN, MAX_DELAY_S = 10, 0.25  # a step takes ~25 ms, a save ~10-100 ms
RESUMING = re.compile(r"resuming\s.*?\sfrom\s+(step-\d{7}|the\s+start)", re.S)  # rich wraps long lines


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("kill9")
    rows = [
        {"prompt": f"Say the number {i % 7}.", "completion": f"The number is {i % 7}." * (1 + i % 3)} for i in range(40)
    ]
    write_jsonl(folder / "qa.jsonl", rows)
    (folder / "run.yaml").write_text("{}\n")
    return folder


def sets(model_dir: Path, workdir: Path, name: str, settings: list[str]) -> list[str]:
    base = [f"model.name={model_dir}", f"data.train={workdir / 'qa.jsonl'}", f"run.output_dir={workdir / 'runs'}"]
    return [*base, f"run.name={name}", *settings]


def spawn(args: list[str], workdir: Path, log: Path, resume: bool, crash: str | None = None) -> subprocess.Popen:
    cmd = [TUNESMITH, "train", str(workdir / "run.yaml"), *(["--resume"] if resume else [])]
    cmd += [x for a in args for x in ("--set", a)]
    env = {**os.environ, "TUNESMITH_ALLOCATOR": "system"}
    env.pop("TUNESMITH_CRASH_AT", None)
    if crash:
        env["TUNESMITH_CRASH_AT"] = crash
    with log.open("w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(run: Path) -> dict[str, dict[str, str]]:
    """SHA-256 of every file of every complete checkpoint, by checkpoint name."""
    return {c.name: {f.name: sha256(f) for f in sorted(c.iterdir())} for c in complete_checkpoints(run / "checkpoints")}


def check_survivors(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]], run: Path) -> None:
    """What must hold after any kill."""
    for name in before.keys() & after.keys():
        assert before[name] == after[name], f"complete checkpoint {name} changed"
    if before:
        newest = max(before)
        assert newest in after or any(name > newest for name in after), f"{newest} was removed with no newer one"
    for name in after:  # whatever looks complete really is complete
        folder = run / "checkpoints" / name
        json.loads((folder / "state.json").read_text())
        for tensors in folder.glob("*.safetensors"):
            load_file(tensors)


def check_resumed_from(log: Path, before: dict[str, dict[str, str]]) -> None:
    found = RESUMING.search(log.read_text())
    assert found, log.read_text()[-2000:]
    said = " ".join(found.group(1).split())
    assert said == (max(before) if before else "the start"), "did not resume from the newest checkpoint"


def end_state(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    last = complete_checkpoints(run / "checkpoints")[-1]
    found = {f"checkpoint/{f.name}": load_file(f) for f in sorted(last.glob("*.safetensors"))}
    found["best"] = load_file(run / "best" / "trainable.safetensors")
    for export in sorted(run.glob("adapter/*.safetensors")):
        found[f"export/{export.name}"] = load_file(export)
    return found


def assert_same_end_state(run: Path, straight: Path) -> None:
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    debris = [*(run / "checkpoints").glob(".staging-*"), *(run / "checkpoints").glob(".removing-*")]
    assert not debris, "staging or rotation debris survived the resume"
    a, b = end_state(straight), end_state(run)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys()
        assert all(torch.equal(a[name][k], b[name][k]) for k in a[name]), f"{name} differs from the straight run"


def metrics(run: Path) -> list[dict]:
    timing = {"tokens_per_s", "peak_rss_mb", "train_loss_mean", "train_val_gap"}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in timing} for row in rows]


def straight_run(model_dir: Path, workdir: Path, name: str, settings: list[str]) -> Path:
    return run_train(load_config(None, sets(model_dir, workdir, name, settings))).path


@pytest.fixture(scope="module")
def crash_chain(tiny_model_dir, workdir):
    """Kill one run at each crash point in turn (each kill's resume is the next victim); the last resume ends."""
    args = sets(tiny_model_dir, workdir, "crash-chain", CRASH_CHAIN)
    run = workdir / "runs" / "crash-chain"
    for i, point in enumerate(CRASH_POINTS):
        before = snapshot(run) if run.exists() else {}
        log = workdir / f"crash-{i}-{point}.log"
        proc = spawn(args, workdir, log, resume=i > 0, crash=f"{point}@{2 * (i + 1)}")
        assert proc.wait(timeout=300) == -signal.SIGKILL, log.read_text()[-2000:]
        if i > 0:
            check_resumed_from(log, before)
        check_survivors(before, snapshot(run), run)
    before = snapshot(run)
    log = workdir / "crash-final.log"
    assert spawn(args, workdir, log, resume=True).wait(timeout=300) == 0, log.read_text()[-2000:]
    check_resumed_from(log, before)
    check_survivors(before, snapshot(run), run)
    return run, straight_run(tiny_model_dir, workdir, "crash-straight", CRASH_CHAIN)


def test_kill9_at_every_crash_point_then_resume(crash_chain):
    run, straight = crash_chain
    assert_same_end_state(run, straight)


def test_kill9_leaves_one_metrics_row_per_step(crash_chain):
    run, straight = crash_chain
    assert metrics(run) == metrics(straight)


def random_chain(args: list[str], workdir: Path, name: str, seed: int) -> dict[str, int]:
    """Kill `RANDOM_KILLS_PER_CHAIN` processes of one run at seeded random times after their training started."""
    rng, run = random.Random(seed), workdir / "runs" / name
    figures: dict = {"kills": 0, "inside_a_save": 0, "at_steps": []}
    for i in range(RANDOM_KILLS_PER_CHAIN):
        before = snapshot(run) if run.exists() else {}
        # Training has started once a step beyond both the checkpoint and the killed process's last row is logged.
        started_after = max(int(max(before)[5:]) if before else 0, last_train_step(run))
        log = workdir / f"{name}-{i}.log"
        proc = spawn(args, workdir, log, resume=i > 0)
        deadline = time.monotonic() + 120
        while proc.poll() is None and last_train_step(run) <= started_after and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0, MAX_DELAY_S))
        assert proc.poll() is None, f"{name}: process {i} ended before its kill\n{log.read_text()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
        figures["kills"] += 1
        figures["at_steps"].append(last_train_step(run))
        figures["inside_a_save"] += bool(list((run / "checkpoints").glob(".staging-*")))
        if i > 0:
            check_resumed_from(log, before)
        check_survivors(before, snapshot(run), run)
    before = snapshot(run)
    log = workdir / f"{name}-final.log"
    assert spawn(args, workdir, log, resume=True).wait(timeout=300) == 0, log.read_text()[-2000:]
    check_resumed_from(log, before)
    check_survivors(before, snapshot(run), run)
    return figures


def last_train_step(run: Path) -> int:
    """The newest step with a training row in metrics.jsonl (0 before any); tolerates a half-written line."""
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return 0
    steps = [0]
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if "train_loss" in row:
            steps.append(row["step"])
    return steps[-1]


def test_kill9_at_20_random_points_then_resume(tiny_model_dir, workdir):
    chains = [(f"random-{seed}", seed) for seed in (1, 2)]
    with ThreadPoolExecutor(len(chains)) as pool:
        jobs = [
            pool.submit(random_chain, sets(tiny_model_dir, workdir, name, RANDOM_CHAIN), workdir, name, seed)
            for name, seed in chains
        ]
        figures = [job.result() for job in jobs]
    straight = straight_run(tiny_model_dir, workdir, "random-straight", RANDOM_CHAIN)
    for name, _ in chains:
        assert_same_end_state(workdir / "runs" / name, straight)
    kills = sum(f["kills"] for f in figures)
    assert kills == 2 * RANDOM_KILLS_PER_CHAIN
    saves = sum(f["inside_a_save"] for f in figures)
    print(f"random kill -9: {kills} kills, {saves} inside a save, at steps {[f['at_steps'] for f in figures]}")
