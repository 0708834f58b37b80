"""Our output is ours: third-party log lines and warnings (transformers, huggingface_hub, kernels, torch) stay off
the terminal, around our one-line errors too, and go to the run's log.txt; `--verbose` shows them. Training
output that is not a terminal gets plain progress lines while it runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

# The CLI with libraries that talk in the middle of a command (as bitsandbytes and kernels do when peft is
# imported): loggers with no handler (kernels', huggingface_hub's), one with its own stderr handler (torch's and
# transformers' default), and a FutureWarning.
NOISY_CLI = """
import logging, sys, warnings
from tunesmith.cli import main, train_cmd
own = logging.getLogger("torch._dynamo.noisy")  # a handler of its own, set at import, as torch's are
own.addHandler(logging.StreamHandler(sys.stderr))
own.propagate = False
def noise():
    logging.getLogger("kernels").warning("Skipping publisher trust check for 'kernels-community/x' (offline)")
    logging.getLogger("huggingface_hub.file_download").warning("huggingface_hub says something")
    own.warning("torch says something")
    warnings.warn("a library deprecation", FutureWarning)
load_config = train_cmd.load_config
def noisy_load_config(*args, **kwargs):
    noise()
    return load_config(*args, **kwargs)
train_cmd.load_config = noisy_load_config
sys.argv = ["tunesmith", *sys.argv[1:]]
main.main()
"""
NOISE = ("Skipping publisher trust check", "huggingface_hub says", "torch says", "a library deprecation")


def run_noisy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TUNESMITH_ALLOCATOR": "system", "TUNESMITH_CACHE": str(cwd / "cache")}
    env.pop("TUNESMITH_VERBOSE", None)
    command = [sys.executable, "-c", NOISY_CLI, *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def workdir(tmp_path: Path, tiny_model_dir: Path, qa_data: Path) -> Path:
    (tmp_path / "cfg.yaml").write_text(
        f"model:\n  name: {tiny_model_dir}\ndata:\n  train: {qa_data}\n"
        "train:\n  max_steps: 4\n  eval_every: 2\n  precision: fp32\n"
    )
    return tmp_path


def test_one_line_error_with_noisy_libraries(workdir):
    result = run_noisy("train", "cfg.yaml", "--set", "train.lrr=1e-4", cwd=workdir)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "train.lrr" in lines[0], result.stderr
    kept = (workdir / "cache" / "logs" / "last.txt").read_text()  # no run folder: nothing is lost all the same
    assert all(needle in kept for needle in NOISE), kept


def test_library_lines_go_to_the_run_log_and_progress_prints_plain_lines(workdir):
    result = run_noisy("train", "cfg.yaml", "--set", "run.name=quiet", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert not any(needle in result.stderr for needle in NOISE), result.stderr
    log = (workdir / "runs" / "quiet" / "log.txt").read_text()
    assert all(needle in log for needle in NOISE), log
    steps = [line for line in result.stderr.splitlines() if line.startswith("step ")]
    assert steps[-1].startswith("step 4/4 · loss ") and "tok/s" in steps[-1] and "ETA" in steps[-1], result.stderr


def test_verbose_shows_library_lines(workdir):
    result = run_noisy("--verbose", "train", "cfg.yaml", "--set", "train.lrr=1e-4", cwd=workdir)
    assert result.returncode != 0
    assert all(needle in result.stderr for needle in NOISE), result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error:")
