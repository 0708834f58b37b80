"""Scenario 6 of RELIABILITY.md: NaN/Inf injected in the loss, and separately in the gradients, at step K.

The fault is injected inside the process by wrapping `tunesmith.train.loop.accumulate_step` (the real one runs):
- loss: the summed loss of each forward pass of step K gets `+ nan` / `+ inf` added, so the loss is non-finite
  while the gradients stay finite (d(loss + c)/dw = dloss/dw): only the loss check can catch it;
- gradient: a hook on one trainable weight adds `nan` / `inf` to its gradient in step K's backward pass, so the
  loss stays finite: only the gradient-norm check can catch it.

The policy (docs/training.md, "Signals and failures") is to stop before the optimizer applies the step, name
the step, log and save nothing non-finite, and mark the run failed (exit 3 through the CLI, one `error:` line).
Checked for LoRA and full fine-tuning; then a resume from the last checkpoint (the fault was transient) ends
with finite weights, and the real console script prints the one-line error.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.config import load_config
from tunesmith.errors import NonFiniteLossError
from tunesmith.recipes.train import run_train
from tunesmith.train import loop

pytestmark = pytest.mark.integration
K = 3
SETTINGS = [
    "train.batch_size=4",  # 36 training rows: 9 micro-batches, 5 optimizer steps
    "train.grad_accum=2",  # two forward passes per step: the fault is in both
    "train.save_every=1",
    "train.eval_every=2",
    "train.keep_checkpoints=10",
    "train.precision=fp32",
    "train.lr=5e-3",
    "data.max_length=64",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nan-data") / "qa.jsonl"
    rows = [{"prompt": f"Say the number {i % 7}.", "completion": f"The number is {i % 7}."} for i in range(40)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(model_dir: Path, data: Path, out: Path, name: str, *extra: str):
    sets = [f"model.name={model_dir}", f"data.train={data}", f"run.output_dir={out}", f"run.name={name}"]
    return load_config(None, [*sets, *SETTINGS, *extra])


@contextmanager
def inject(where: str, value: float, at_step: int = K):
    """Make step `at_step`'s loss or one gradient non-finite; yields the list of steps the fault hit."""
    real, hit = loop.accumulate_step, []
    steps = iter(range(1, 10_000))  # accumulate_step runs once per optimizer step (no out-of-memory retry here)

    def faulty(model, micro_batches, precision=None, loss_sum_fn=None, *args, **kwargs):
        step = next(steps)
        if step != at_step:
            return real(model, micro_batches, precision, loss_sum_fn, *args, **kwargs)
        hit.append(step)
        if where == "loss":

            def poisoned(m, batch):
                loss, n = loss_sum_fn(m, batch)
                return loss + value, n

            return real(model, micro_batches, precision, poisoned, *args, **kwargs)
        weight = next(p for p in model.parameters() if p.requires_grad)
        handle = weight.register_hook(lambda grad: grad + value)
        try:
            return real(model, micro_batches, precision, loss_sum_fn, *args, **kwargs)
        finally:
            handle.remove()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop, "accumulate_step", faulty)
        yield hit


def assert_nothing_non_finite_saved(run: Path) -> int:
    """Every tensor in every safetensors file of the run is finite; returns how many tensors were checked."""
    checked = 0
    for file in sorted(run.rglob("*.safetensors")):
        for name, tensor in load_file(file).items():
            if tensor.is_floating_point():
                assert torch.isfinite(tensor).all(), f"{file.relative_to(run)}: {name} is not finite"
                checked += 1
    return checked


def assert_nothing_non_finite_logged(run: Path) -> list[dict]:
    text = (run / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    rows = [json.loads(line) for line in text.splitlines()]
    for row in rows:
        assert all(math.isfinite(v) for v in row.values() if isinstance(v, float)), row
    return rows


CASES = [(where, value) for where in ("loss", "gradient") for value in (math.nan, math.inf)]


@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize(("where", "value"), CASES, ids=[f"{w}-{v}" for w, v in CASES])
def test_non_finite_is_caught_at_its_step_and_nothing_non_finite_is_saved(
    where, value, method, tiny_model_dir, data, tmp_path
):
    cfg = config(tiny_model_dir, data, tmp_path, "nan", f"method.name={method}")
    with inject(where, value) as hit, pytest.raises(NonFiniteLossError) as caught:
        run_train(cfg)
    assert hit == [K]
    message = str(caught.value)
    what = "loss" if where == "loss" else "gradient norm"
    assert f"the {what} became NaN/Inf at step {K}" in message and "\n" not in message, message
    assert caught.value.exit_code == 3

    run = tmp_path / "nan"
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and f"step {K}" in status["error"], status
    rows = assert_nothing_non_finite_logged(run)
    assert max(r["step"] for r in rows if "train_loss" in r) == K - 1  # step K never logged a loss
    steps = sorted(p.name for p in (run / "checkpoints").glob("step-*"))
    assert steps == [f"step-{s:07d}" for s in range(1, K)], steps  # nothing saved from step K
    assert not list((run / "checkpoints").glob(".staging-*"))
    assert (run / "best").is_dir()
    assert assert_nothing_non_finite_saved(run) > 0
    assert not (run / "summary.json").exists() and not (run / "adapter").exists() and not (run / "model").exists()


def test_resume_after_a_transient_fault_finishes_finite(tiny_model_dir, data, tmp_path):
    cfg = config(tiny_model_dir, data, tmp_path, "transient")
    with inject("gradient", math.nan), pytest.raises(NonFiniteLossError):
        run_train(cfg)
    run = run_train(cfg, resume=True).path  # the fault is gone: continue from step K-1's checkpoint
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    rows = assert_nothing_non_finite_logged(run)
    assert [r["step"] for r in rows if "train_loss" in r] == list(range(1, 6))  # step K-1's row kept, not doubled
    assert assert_nothing_non_finite_saved(run) > 0


DRIVER = """
import math, sys
from tunesmith.train import loop
real, calls = loop.accumulate_step, []
def faulty(model, micro, precision=None, loss_sum_fn=None, *args, **kwargs):
    calls.append(1)
    if len(calls) == {k}:
        inner = loss_sum_fn
        def loss_sum_fn(m, batch):
            loss, n = inner(m, batch)
            return loss + math.nan, n
    return real(model, micro, precision, loss_sum_fn, *args, **kwargs)
loop.accumulate_step = faulty
from tunesmith.cli.main import main
sys.argv = ["tunesmith", *sys.argv[1:]]
main()
"""


def test_cli_prints_one_error_line_and_exits_3(tiny_model_dir, data, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.replace("{k}", str(K)))
    (tmp_path / "run.yaml").write_text("{}\n")
    sets = [f"model.name={tiny_model_dir}", f"data.train={data}", f"run.output_dir={tmp_path}", "run.name=cli"]
    cmd = [sys.executable, str(driver), "train", str(tmp_path / "run.yaml")]
    cmd += [x for s in [*sets, *SETTINGS] for x in ("--set", s)]
    env = {**os.environ, "TUNESMITH_ALLOCATOR": "system"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 3, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"at step {K}" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert assert_nothing_non_finite_saved(tmp_path / "cli") > 0


@contextmanager
def nan_validation_loss(at_call: int):
    """The validation pass returns a NaN loss on its `at_call`-th call (1: the base evaluation at step 0)."""
    real, calls = loop.evaluate_loss, []

    def faulty(*args, **kwargs):
        calls.append(1)
        result = real(*args, **kwargs)
        return {**result, "loss": math.nan} if len(calls) == at_call else result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop, "evaluate_loss", faulty)
        yield calls


def test_nan_validation_loss_is_never_logged_or_saved(tiny_model_dir, data, tmp_path):
    cfg = config(tiny_model_dir, data, tmp_path, "val-nan")
    with nan_validation_loss(at_call=2) as calls, pytest.raises(NonFiniteLossError):
        run_train(cfg)
    assert len(calls) == 2
    run = tmp_path / "val-nan"
    assert json.loads((run / "status.json").read_text())["status"] == "failed"
    assert_nothing_non_finite_logged(run)
    assert_nothing_non_finite_saved(run)


def test_nan_validation_loss_is_a_one_line_error_naming_the_step(tiny_model_dir, data, tmp_path):
    cfg = config(tiny_model_dir, data, tmp_path, "val-nan")
    with nan_validation_loss(at_call=2), pytest.raises(NonFiniteLossError, match="step 2"):
        run_train(cfg)
