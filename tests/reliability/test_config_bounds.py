"""Values that used to validate and then crash later (issue 15, defect 4), an output folder that is a symlink
(defect 7) and a pickle-only adapter (defect 7): each is one `error:` line naming the key or path, exit 2, and
no run folder."""

from __future__ import annotations

import json

import pytest
from reliability_helpers import cli, one_error_line

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "override,needle",
    [
        ("train.epochs=.inf", "train.epochs"),
        ("train.lr=.inf", "train.lr"),
        ("train.lr=.nan", "train.lr"),
        ("train.epochs=1e9", "train.epochs"),
        ("data.max_length=1000000000", "data.max_length"),
        ("run.output_dir=cfg.yaml", "is a file"),
        ("run.name=" + "x" * 300, "run.name is 300 bytes"),
    ],
)
def test_values_that_cannot_work_are_refused_up_front(override, needle, tmp_path, tiny_model_dir, qa_data):
    (tmp_path / "cfg.yaml").write_text(f"model:\n  name: {tiny_model_dir}\ndata:\n  train: {qa_data}\n")
    for command in ("validate", "train"):
        result = cli(command, "cfg.yaml", "--set", override, cwd=tmp_path)
        assert result.returncode == 2 and needle in one_error_line(result)
    assert not (tmp_path / "runs").exists()


def test_symlinked_output_dir_is_refused(tmp_path, tiny_model_dir, qa_data):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "runs").symlink_to(outside)
    (tmp_path / "work" / "cfg.yaml").write_text(f"model:\n  name: {tiny_model_dir}\ndata:\n  train: {qa_data}\n")
    result = cli("train", "cfg.yaml", cwd=tmp_path / "work")
    assert "is a symlink" in one_error_line(result) and not any(outside.iterdir())


def test_pickle_only_adapter_is_refused_in_one_line(tmp_path, sets_for):
    trained = cli("train", *sets_for("pickled", "train.max_steps=1"))
    assert trained.returncode == 0, trained.stderr
    adapter = tmp_path / "runs" / "pickled" / "adapter"
    (adapter / "adapter_model.safetensors").unlink()
    (adapter / "adapter_model.bin").write_bytes(b"\x80\x04K\x01.")  # a pickle: never opened
    for command in (["eval", str(adapter.parent)], ["chat", str(adapter.parent), "--prompt", "hi"]):
        result = cli(*command)
        assert "only has pickle adapter weights (adapter_model.bin)" in one_error_line(result), command
    assert json.loads((adapter.parent / "status.json").read_text())["status"] == "completed"
