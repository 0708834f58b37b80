"""Helpers of tests/reliability: tiny runs through the real console script or the recipe."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from tunesmith.config import load_config
from tunesmith.recipes.train import run_train

TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))
TINY_RUN = ["train.precision=fp32", "train.batch_size=4", "data.max_length=64", "train.lr=5e-3"]


def tiny_sets(model_dir: Path, data: Path, out: Path, name: str, *extra: str) -> list[str]:
    return [
        f"model.name={model_dir}",
        f"data.train={data}",
        f"run.output_dir={out}",
        f"run.name={name}",
        *TINY_RUN,
        *extra,
    ]


def train_tiny(model_dir: Path, data: Path, out: Path, name: str, *extra: str, resume: bool = False) -> Path:
    return run_train(load_config(None, tiny_sets(model_dir, data, out, name, *extra)), resume=resume).path


def cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "TUNESMITH_ALLOCATOR": "system", **(env or {})}
    return subprocess.run(
        [TUNESMITH, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300, **kwargs
    )


def last_error_line(result: subprocess.CompletedProcess) -> str:
    """A command that failed after it started working: its output so far, then one `error:` line, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert result.returncode != 0 and errors == lines[-1:] and "Traceback" not in result.stderr, result.stderr
    return lines[-1]


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed command (asserts there is exactly one, and no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def tree_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
