"""User mistakes, tried as a new user would through the real console script: one line, non-zero, no run left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([TUNESMITH, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def workdir(tmp_path: Path, tiny_model_dir: Path) -> Path:
    (tmp_path / "cfg.yaml").write_text(f"model:\n  name: {tiny_model_dir}\ntrain:\n  max_steps: 2\n")
    return tmp_path


def no_runs(workdir: Path) -> bool:
    return not (workdir / "runs").exists() or not any((workdir / "runs").iterdir())


def test_malformed_jsonl_line(workdir):
    good = json.dumps({"prompt": "hi", "completion": "hello"})
    (workdir / "bad.jsonl").write_text(f"{good}\n{{not json\n{good}\n")
    result = run_cli("train", "cfg.yaml", "--set", "data.train=bad.jsonl", cwd=workdir)
    assert_one_line_error(result, "bad.jsonl:2", "invalid_json")
    assert no_runs(workdir)


def test_missing_field(workdir):
    rows = [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}, {"instruction": "e"}]
    (workdir / "miss.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli("train", "cfg.yaml", "--set", "data.train=miss.jsonl", cwd=workdir)
    assert_one_line_error(result, "miss.jsonl:3", "output", "missing_field")
    assert no_runs(workdir)


def test_dpo_on_rows_without_a_rejected_answer(workdir, qa_data):
    result = run_cli("train", "cfg.yaml", "--set", "task.name=dpo", "--set", f"data.train={qa_data}", cwd=workdir)
    assert_one_line_error(result, "preference rows {prompt, chosen, rejected}", "format prompt_completion")
    assert no_runs(workdir)


def test_unknown_config_key(workdir):
    result = run_cli("train", "cfg.yaml", "--set", "train.lrr=1e-4", cwd=workdir)
    assert_one_line_error(result, "train.lrr", 'Did you mean "lr"')
    assert no_runs(workdir)


def test_wrong_model_name(workdir, qa_data):
    result = run_cli(
        "train", "cfg.yaml", "--set", "model.name=smollm2-13m", "--set", f"data.train={qa_data}", cwd=workdir
    )
    assert_one_line_error(result, "smollm2-13m", "smollm2-135m")
    assert no_runs(workdir)


def test_hub_id_while_offline(workdir, qa_data):
    result = run_cli(
        "train",
        "cfg.yaml",
        "--set",
        "model.name=nonexistent-org/nonexistent-model",
        "--set",
        f"data.train={qa_data}",
        cwd=workdir,
    )
    assert_one_line_error(result, "nonexistent-org/nonexistent-model", "models pull")
    assert no_runs(workdir)


def test_validate_prints_resolved_config(workdir):
    result = run_cli("validate", "cfg.yaml", "--set", "train.lr=1e-3", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "lr: 0.001" in result.stdout


def test_skip_invalid_trains_and_lists_every_dropped_row(workdir):
    rows = [json.dumps({"prompt": f"say {i}", "completion": f"ok {i}"}) for i in range(12)]
    rows[4] = "{broken"
    rows[7] = json.dumps({"prompt": "no completion here"})
    (workdir / "some_bad.jsonl").write_text("\n".join(rows) + "\n")
    result = run_cli(
        "train",
        "cfg.yaml",
        "--set",
        "data.train=some_bad.jsonl",
        "--set",
        "run.name=skip",
        "--set",
        "train.precision=fp32",
        "--skip-invalid",
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr
    assert "2 rows rejected" in result.stderr
    report = json.loads((workdir / "runs" / "skip" / "data_report.json").read_text())
    assert report["rejected_rows"] == 2
    assert [(r["line"], r["code"]) for r in report["rejected"]] == [(5, "invalid_json"), (8, "missing_field")]
