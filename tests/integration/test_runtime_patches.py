"""Runtime patches (fused ops, training attention) never lose a run, even when a library changes the patched
objects underneath: transformers 5.25 with `kernels` re-kernelizes a model on every `train()`/`eval()`, which
deletes per-instance `forward` attributes of the classes its hub decorator marked (`kernel_layer_name`), or
replaces them with a hub kernel's forward (issue 14)."""

from __future__ import annotations

import json
from types import MethodType

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM
from transformers.models.llama import modeling_llama

import tunesmith.compat.fused as fused
import tunesmith.compat.patches as patches
from tunesmith.compat.fused import fused_training_ops
from tunesmith.config import load_config
from tunesmith.recipes.train import run_train

pytestmark = pytest.mark.integration


def _kernelize_on_mode_switch(monkeypatch, replacement=None):
    """The model behaves as under transformers 5.25 + kernels: RMSNorm and the MLP are hub-decorated classes, and
    `train()`/`eval()` reset their instances' `forward` (popped, or set to `replacement`'s forward)."""
    for cls in (modeling_llama.LlamaRMSNorm, modeling_llama.LlamaMLP):
        monkeypatch.setattr(cls, "kernel_layer_name", cls.__name__, raising=False)
    plain_train = LlamaForCausalLM.train

    def train(self, mode=True):
        result = plain_train(self, mode)
        for module in self.modules():
            if hasattr(type(module), "kernel_layer_name"):
                if replacement is None:
                    module.__dict__.pop("forward", None)
                else:
                    module.forward = MethodType(replacement, module)
        return result

    monkeypatch.setattr(LlamaForCausalLM, "train", train)


@pytest.fixture
def lora_llama(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(fused, "_MIN_PARAMETERS", 0)
    model = LlamaForCausalLM.from_pretrained(tiny_model_dir)
    model.requires_grad_(False)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))


def _train_step(model):
    ids = torch.randint(40, (2, 9), generator=torch.Generator().manual_seed(1))
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    model.eval()


def test_instance_resets_keep_the_class_level_norm_and_restore_cleanly(lora_llama, monkeypatch):
    _kernelize_on_mode_switch(monkeypatch)
    norm_forward = vars(modeling_llama.LlamaRMSNorm)["forward"]
    with fused_training_ops(lora_llama, True, bf16=False) as report:
        assert "rmsnorm" in report.kernels and "gated_mlp" in report.kernels
        _train_step(lora_llama)
    assert not report.restore_problems  # what the library removed is not ours to put back
    assert report.calls["rmsnorm"] > 0  # on the class, so the library's reset fell back to it
    assert report.calls["gated_mlp"] == 0  # per instance: the reset removed it, and the count says so
    assert vars(modeling_llama.LlamaRMSNorm)["forward"] is norm_forward
    assert not any("forward" in vars(m) for m in lora_llama.modules() if hasattr(m, "gate_proj"))


def test_a_library_forward_put_in_our_place_is_left_alone(lora_llama, monkeypatch):
    def hub_kernel_forward(self, x):
        return type(self).forward(self, x)

    _kernelize_on_mode_switch(monkeypatch, replacement=hub_kernel_forward)
    with fused_training_ops(lora_llama, True, bf16=False) as report:
        _train_step(lora_llama)
    assert report.restore_problems and all("left as it is" in line for line in report.restore_problems)
    mlps = [m for m in lora_llama.modules() if hasattr(m, "gate_proj")]
    assert all(m.forward.__func__ is hub_kernel_forward for m in mlps)  # the library's choice stands


def _run(model_dir, data, out, name):
    cfg = load_config(
        None,
        [
            f"model.name={model_dir}",
            f"data.train={data}",
            f"run.output_dir={out}",
            f"run.name={name}",
            "train.max_steps=4",
            "train.batch_size=4",
            "train.eval_every=2",
            "train.precision=fp32",
            "train.fused_ops=auto",
        ],
    )
    return run_train(cfg).path


def test_a_patch_that_cannot_be_undone_does_not_lose_the_run(tiny_model_dir, qa_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fused, "_MIN_PARAMETERS", 0)
    _kernelize_on_mode_switch(monkeypatch)

    def broken_undo(patch):
        raise AttributeError(f"'{type(patch.owner).__name__}' object has no attribute '{patch.name}'")

    monkeypatch.setattr(patches, "_undo", broken_undo)
    # Nothing is undone here, so monkeypatch puts the model code back after the test.
    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", modeling_llama.LlamaRMSNorm.forward)
    monkeypatch.setattr(modeling_llama, "apply_rotary_pos_emb", modeling_llama.apply_rotary_pos_emb)
    run = _run(tiny_model_dir, qa_data, tmp_path, "broken-undo")
    summary = json.loads((run / "summary.json").read_text())
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert summary["steps"] == 4 and summary["fused_ops"]["restore_problems"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "could not be restored" in line]
    assert warnings and all(line.startswith("warning:") for line in warnings)


def test_a_library_that_resets_forwards_while_training_loses_no_run(tiny_model_dir, qa_data, tmp_path, monkeypatch):
    monkeypatch.setattr(fused, "_MIN_PARAMETERS", 0)
    _kernelize_on_mode_switch(monkeypatch)
    run = _run(tiny_model_dir, qa_data, tmp_path, "kernelized")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 4 and (run / "adapter").is_dir()
    assert summary["fused_ops"]["training_calls"]["rmsnorm"] > 0
    assert summary["environment"]["versions"]["transformers"]
