"""Fused training ops: the compiled model code and LoRA's addmm compute what the model computes, only while
training, and everything comes back afterwards."""

from __future__ import annotations

import sys

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM

from tunesmith.compat import fused
from tunesmith.compat.fused import FUSED_OPS, fused_training_ops
from tunesmith.compat.patches import grad_only

pytestmark = pytest.mark.integration


@pytest.fixture
def lora_llama(tiny_model_dir):
    """The tiny test Llama with LoRA on every linear (options: LoraConfig's)."""

    def build(**options) -> torch.nn.Module:
        model = LlamaForCausalLM.from_pretrained(tiny_model_dir)
        model.requires_grad_(False)
        torch.manual_seed(0)
        # Random B (init_lora_weights=False), so the adapters' own path is part of every comparison.
        lora = {"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "init_lora_weights": False, **options}
        return get_peft_model(model, LoraConfig(**lora))

    return build


def _loss_and_grads(model, ids):
    loss = model(input_ids=ids, labels=ids).loss
    params = [p for p in model.parameters() if p.requires_grad]
    return loss.detach(), [g.detach() for g in torch.autograd.grad(loss, params)]


@pytest.fixture
def any_size(monkeypatch):
    monkeypatch.setattr(fused, "_MIN_PARAMETERS", 0)


def test_fused_ops_give_the_models_loss_and_gradients(any_size, lora_llama):
    model, ids = lora_llama(), torch.randint(40, (3, 10), generator=torch.Generator().manual_seed(3))
    want_loss, want_grads = _loss_and_grads(model, ids)
    with fused_training_ops(model, True, bf16=False) as report:
        assert report.kernels == ["rmsnorm", "rotary", "gated_mlp", "lora_addmm"], report
        loss, grads = _loss_and_grads(model, ids)
    assert abs(float(loss - want_loss)) < 1e-5
    assert all(torch.allclose(g, w, rtol=1e-4, atol=1e-6) for g, w in zip(grads, want_grads, strict=True))


def test_everything_is_restored_afterwards(any_size, lora_llama):
    model = lora_llama()
    modeling = sys.modules[type(model.base_model.model).__module__]
    rotary = modeling.apply_rotary_pos_emb
    norm_class = type(model.base_model.model.model.norm)
    norm_forward = vars(norm_class)["forward"]
    patched = [m for m in model.modules() if "forward" in vars(m)]
    with fused_training_ops(model, True, bf16=False) as report:
        assert report.kernels
        assert modeling.apply_rotary_pos_emb is not rotary
        assert vars(norm_class)["forward"] is not norm_forward  # on the class: survives instance resets
    assert modeling.apply_rotary_pos_emb is rotary
    assert vars(norm_class)["forward"] is norm_forward
    assert [m for m in model.modules() if "forward" in vars(m)] == patched
    assert not report.restore_problems


def test_no_grad_calls_take_the_models_own_code():
    call = grad_only(lambda: "fused", lambda: "model")
    assert call() == "fused"
    with torch.no_grad():
        assert call() == "model"


def test_small_models_and_the_model_setting_skip_it(lora_llama):
    model = lora_llama()
    with fused_training_ops(model, True, bf16=False) as report:
        assert report.kernels == [] and "parameters" in report.skipped["rmsnorm"]
    with fused_training_ops(model, False, bf16=False) as report:
        assert report.kernels == [] and report.skipped["lora_addmm"] == "train.fused_ops=model"


def test_a_replacement_that_changes_the_result_is_not_used(any_size, monkeypatch, lora_llama):
    def wrong_mlp(model, patches):  # a "fusion" that drops the gate
        for mlp in [m for m in model.modules() if hasattr(m, "gate_proj")]:
            patches.set(mlp, "forward", grad_only(lambda x, mlp=mlp: mlp.down_proj(mlp.up_proj(x)), mlp.forward))

    monkeypatch.setitem(FUSED_OPS, "gated_mlp", wrong_mlp)
    model = lora_llama()
    with fused_training_ops(model, True, bf16=False) as report:
        assert report.kernels == []
        assert "MismatchError" in report.failed["gated_mlp"] and set(report.failed) == set(FUSED_OPS)
        assert not any("forward" in vars(m) for m in model.modules() if hasattr(m, "gate_proj"))


def test_lora_dropout_is_applied_inside_the_addmm(any_size, lora_llama):
    model, ids = lora_llama(lora_dropout=0.5), torch.randint(40, (3, 10), generator=torch.Generator().manual_seed(3))
    model.train()
    torch.manual_seed(5)
    want_loss, _ = _loss_and_grads(model, ids)
    with fused_training_ops(model, True, bf16=False) as report:
        assert "lora_addmm" in report.kernels
        torch.manual_seed(5)  # the same dropout masks, drawn in the same order
        loss, _ = _loss_and_grads(model, ids)
    assert abs(float(loss - want_loss)) < 1e-5


def test_dora_layers_keep_peft_forward(any_size, lora_llama):
    with fused_training_ops(lora_llama(use_dora=True), True, bf16=False) as report:
        assert report.skipped["lora_addmm"] == "no plain LoRA layers"


def test_the_check_does_not_move_the_runs_random_stream(any_size, lora_llama):
    model = lora_llama()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    with fused_training_ops(model, True, bf16=False):
        assert torch.equal(torch.rand(3), expected)


def test_the_check_ignores_training_noise_and_keeps_the_mode(any_size, lora_llama):
    model = lora_llama()
    embeddings = model.get_input_embeddings()
    noise = embeddings.register_forward_hook(lambda m, i, out: out + torch.randn_like(out) if m.training else out)
    model.train()
    with fused_training_ops(model, True, bf16=False) as report:
        assert report.kernels and not report.failed
        assert model.training
    noise.remove()
