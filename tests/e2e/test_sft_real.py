"""The real smollm2-135m: a few LoRA steps, then eval and chat through the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.recipes import demo_task
from tunesmith.recipes.train import run_train

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("e2e")
    data = demo_task.write_splits(tmp / "data", n_train=48, n_val=8, n_test=8, seed=1)
    cfg = load_config(
        ROOT / "configs" / "demo.yaml",
        [
            f"data.train={data['train']}",
            f"data.val={data['val']}",
            f"run.output_dir={tmp / 'runs'}",
            "run.name=e2e",
            "train.max_steps=6",
            "train.batch_size=8",
            "train.eval_every=3",
            "train.save_every=3",
        ],
    )
    return run_train(cfg).path


def test_few_real_steps_lower_the_loss(tuned_run):
    summary = json.loads((tuned_run / "summary.json").read_text())
    assert summary["steps"] == 6
    assert summary["tuned_val_loss"] < summary["base_val_loss"]
    assert (tuned_run / "adapter" / "adapter_model.safetensors").is_file()
    assert (tuned_run / "loss.png").stat().st_size > 1000


def test_eval_reports_base_and_tuned(tuned_run):
    result = subprocess.run([TUNESMITH, "eval", str(tuned_run), "--json"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 8
    for side in ("base", "tuned"):
        assert {"loss", "perplexity", "exact_match"} <= set(report[side])
    assert report["tuned"]["loss"] < report["base"]["loss"]


def test_chat_one_shot_with_a_run(tuned_run):
    prompt = f"{demo_task.INSTRUCTION}\n\nOrder from Ana Costa: 2 x desk lamp, deliver to Oslo."
    result = subprocess.run(
        [TUNESMITH, "chat", str(tuned_run), "--prompt", prompt, "--max-new-tokens", "40"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "Ana Costa" in result.stdout


def test_chat_base_model_knows_paris():
    result = subprocess.run(
        [TUNESMITH, "chat", "smollm2-135m", "--prompt", "What is the capital of France?", "--max-new-tokens", "20"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
