"""`tunesmith export --format merged`: the adapter folded into the base gives a plain model folder whose logits
equal the adapter run's; the same from a registry version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunesmith.config import load_config
from tunesmith.errors import UserError
from tunesmith.methods.loading import load_run
from tunesmith.model_registry.store import Registry
from tunesmith.recipes.export import export_merged
from tunesmith.recipes.train import run_train

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    data = tmp / "rows.jsonl"
    rows = [{"instruction": f"say {i}", "output": f"number {i}"} for i in range(24)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = [
        f"model.name={tiny_model_dir}",
        f"data.train={data}",
        f"run.output_dir={tmp / 'runs'}",
        "run.name=lora",
        "method.name=lora",
        "train.max_steps=3",
        "train.batch_size=8",
        "train.lr=1e-2",
        "train.precision=fp32",
        "data.check.enabled=false",
    ]
    return run_train(load_config(None, overrides)).path


def _logits(model: torch.nn.Module) -> torch.Tensor:
    ids = torch.tensor([[1, 5, 9, 42, 7, 3]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_export_has_the_adapter_runs_logits(lora_run: Path, tmp_path: Path):
    reference = _logits(load_run(lora_run).model.eval())
    folder = export_merged(str(lora_run), tmp_path / "merged")
    assert not (folder / "adapter_config.json").exists() and list(folder.glob("*.safetensors"))
    merged = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    torch.testing.assert_close(_logits(merged), reference, atol=1e-4, rtol=1e-4)
    with pytest.raises(UserError, match="exists"):
        export_merged(str(lora_run), folder)


def test_export_of_a_registry_version(lora_run: Path, tmp_path: Path):
    db = str(tmp_path / "registry.db")
    registry = Registry(db)
    registry.add(lora_run, "tiny")
    registry.promote("tiny", 1)
    reference = _logits(load_run(lora_run).model.eval())
    for ref in ("tiny", "tiny:1"):
        folder = export_merged(ref, tmp_path / ref.replace(":", "-"), db)
        merged = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        torch.testing.assert_close(_logits(merged), reference, atol=1e-4, rtol=1e-4)
    with pytest.raises(UserError, match="has no version 7"):
        export_merged("tiny:7", tmp_path / "none", db)
