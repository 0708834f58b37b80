"""Scenario 1 of RELIABILITY.md, resume equivalence: stop at step k, resume, and everything after k is
bit-identical to a run that was never stopped: the sample order (which rows make each micro-batch of each step),
every logged number after k (train loss, lr, grad norm, token counts, validation loss), the final checkpoint
(weights and optimizer state), the best weights and the export. For LoRA and for full fine-tuning.

Two ways to stop: SIGTERM through the loop's own handler (checkpoint of the current step), and kill -9 in the
middle of a save through the real CLI (TUNESMITH_CRASH_AT), which leaves an older checkpoint to resume from and
metrics rows past it that the resume must replace.

The sample order is recorded by wrapping `tunesmith.train.loop._train_step` (a spy: it calls the real step).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.config import load_config
from tunesmith.errors import TrainingInterrupted
from tunesmith.recipes.train import run_train
from tunesmith.train import loop

pytestmark = pytest.mark.integration
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))
TIMING = {"tokens_per_s", "peak_rss_mb"}  # wall-clock figures: the only fields allowed to differ
RUNNING_MEAN = {"train_loss_mean", "train_val_gap"}  # see test_resume_keeps_the_running_train_loss_mean

# 40 rows, 4 held out for validation: 36 training rows, batch 4 -> 9 micro-batches an epoch; grad_accum 2 ->
# 5 optimizer steps an epoch (the last one has a single micro-batch); 2 epochs = 10 steps.
SETTINGS = [
    "train.epochs=2",
    "train.batch_size=4",
    "train.grad_accum=2",
    "train.eval_every=4",
    "train.save_every=3",
    "train.keep_checkpoints=10",
    "train.precision=fp32",
    "train.lr=5e-3",
    "data.max_length=64",
    "eval.batch_size=8",
]
STOP_AT = 7  # mid-epoch 2, not a save step: the signal handler writes step 7 itself
EPOCH_END = 5  # the last step of epoch 1


def write_jsonl(path: Path, rows_: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows_))
    return path


def rows(i: int) -> dict:
    # Lengths vary, so the length-grouped batch plan really reorders rows.
    return {
        "prompt": f"Say the number {i % 7}." + " please" * (i % 3),
        "completion": f"The number is {i % 7}." * (1 + i % 4),
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("resume-data") / "qa.jsonl", [rows(i) for i in range(40)])


def config(model_dir: Path, data: Path, out: Path, name: str, method: str, *extra: str):
    sets = [f"model.name={model_dir}", f"data.train={data}", f"run.output_dir={out}", f"run.name={name}"]
    return load_config(None, [*sets, f"method.name={method}", *SETTINGS, *extra])


@contextmanager
def recording_steps():
    """Record, per optimizer step, the data-file lines of the rows in each of its micro-batches."""
    seen: dict[int, tuple[tuple[int, ...], ...]] = {}
    real = loop._train_step

    def spy(setup, window, optimizer, step, *args, **kwargs):
        seen[step] = tuple(tuple(setup.train_data[i].line for i in micro) for micro in window)
        return real(setup, window, optimizer, step, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop, "_train_step", spy)
        yield seen


def stop_at(step: int):
    def hook(state):
        if state.step == step:
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


def metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def without(rows_: list[dict], keys: set[str]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in keys} for row in rows_]


def tensors(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Every tensor a run leaves that depends on training: last checkpoint (weights, optimizer, RNG), best, export."""
    last = sorted((run / "checkpoints").glob("step-*"))[-1]
    found = {f"checkpoint/{f.name}": load_file(f) for f in sorted(last.glob("*.safetensors"))}
    found["best"] = load_file(run / "best" / "trainable.safetensors")
    for export in sorted([*run.glob("adapter/*.safetensors"), *run.glob("model/*.safetensors")]):
        found[f"export/{export.name}"] = load_file(export)
    return found


def assert_bit_identical(a: dict[str, dict[str, torch.Tensor]], b: dict[str, dict[str, torch.Tensor]]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys(), name
        different = [k for k in a[name] if not torch.equal(a[name][k], b[name][k])]
        assert not different, f"{name}: {len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def straight(tiny_model_dir, data, tmp_path_factory):
    """An uninterrupted run per method (made once), with the rows of each step."""
    made: dict[str, tuple[Path, dict]] = {}

    def get(method: str) -> tuple[Path, dict]:
        if method not in made:
            out = tmp_path_factory.mktemp(f"straight-{method}")
            with recording_steps() as steps:
                run = run_train(config(tiny_model_dir, data, out, "straight", method)).path
            made[method] = (run, dict(steps))
        return made[method]

    return get


@pytest.fixture(scope="module", params=["lora", "full"])
def runs(request, straight, tiny_model_dir, data, tmp_path_factory):
    """(straight run, its steps) and (run stopped at STOP_AT and resumed, the resumed process's steps)."""
    method = request.param
    cfg = config(tiny_model_dir, data, tmp_path_factory.mktemp(f"stopped-{method}"), "stopped", method)
    with pytest.raises(TrainingInterrupted) as stop:
        run_train(cfg, hooks=[stop_at(STOP_AT)])
    assert stop.value.step == STOP_AT and stop.value.exit_code == 128 + signal.SIGTERM
    with recording_steps() as resumed_steps:
        resumed = run_train(cfg, resume=True).path
    return method, straight(method), (resumed, dict(resumed_steps))


def test_sample_order_after_k_is_identical(runs):
    _, (_, straight), (_, resumed) = runs
    assert sorted(straight) == list(range(1, 11))
    assert sorted(resumed) == list(range(STOP_AT + 1, 11)), "the resume must run exactly the steps after k"
    assert {s: straight[s] for s in resumed} == resumed


def test_metrics_after_k_are_identical(runs):
    _, (straight, _), (resumed, _) = runs
    a, b = without(metrics(straight), RUNNING_MEAN), without(metrics(resumed), RUNNING_MEAN)
    assert [r["step"] for r in a] == [r["step"] for r in b]  # no step lost, none logged twice
    assert a == b  # train_loss, lr, grad_norm, tokens, val_loss, is_best ... to the last bit (JSON floats)
    assert max(r["step"] for r in b) == 10


def test_weights_optimizer_best_and_export_are_bit_identical(runs):
    method, (straight, _), (resumed, _) = runs
    found = tensors(resumed)
    assert any(k.startswith("export/") for k in found), f"{method}: no export found"
    assert_bit_identical(tensors(straight), found)
    assert json.loads((resumed / "status.json").read_text())["status"] == "completed"
    assert not list((resumed / "checkpoints").glob(".staging-*"))


def test_resume_keeps_the_running_train_loss_mean(runs):
    _, (straight, _), (resumed, _) = runs
    assert metrics(straight) == metrics(resumed)


def test_kill9_in_a_save_then_resume_is_bit_identical(tiny_model_dir, data, tmp_path, straight):
    """kill -9 (LoRA) while step 6 is being saved (staged, not yet renamed): the resume starts from step 3,
    replaces the metrics rows of steps 4-6 the killed process wrote, and still ends bit-identical."""
    method = "lora"
    reference, straight_steps = straight(method)
    sets = [f"model.name={tiny_model_dir}", f"data.train={data}", f"run.output_dir={tmp_path}", "run.name=killed"]
    cmd = [TUNESMITH, "train", str(write_cfg(tmp_path)), *(x for s in [*sets, *SETTINGS] for x in ("--set", s))]
    env = {**os.environ, "TUNESMITH_ALLOCATOR": "system", "TUNESMITH_CRASH_AT": "before_rename@6"}
    killed = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run = tmp_path / "killed"
    assert max(r["step"] for r in metrics(run)) == 6  # rows past the newest complete checkpoint (3)
    assert [p.name for p in sorted((run / "checkpoints").glob("step-*"))] == ["step-0000003"]
    with recording_steps() as resumed_steps:
        run_train(config(tiny_model_dir, data, tmp_path, "killed", method), resume=True)
    assert sorted(resumed_steps) == list(range(4, 11))
    assert {s: straight_steps[s] for s in resumed_steps} == resumed_steps
    assert without(metrics(reference), RUNNING_MEAN) == without(metrics(run), RUNNING_MEAN)
    assert_bit_identical(tensors(reference), tensors(run))
    assert not list((run / "checkpoints").glob(".staging-*"))


def write_cfg(folder: Path) -> Path:
    path = folder / "run.yaml"
    path.write_text("{}\n")
    return path


def test_resume_at_the_end_of_an_epoch_with_a_short_last_step(straight, tiny_model_dir, data, tmp_path):
    reference, straight_steps = straight("lora")
    cfg = config(tiny_model_dir, data, tmp_path, "epoch-end", "lora")
    with pytest.raises(TrainingInterrupted):
        run_train(cfg, hooks=[stop_at(EPOCH_END)])
    with recording_steps() as resumed_steps:
        resumed = run_train(cfg, resume=True).path
    assert {s: straight_steps.get(s) for s in resumed_steps} == resumed_steps
    assert_bit_identical(tensors(reference), tensors(resumed))
