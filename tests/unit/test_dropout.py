"""fast_dropout is inverted dropout with the asked rate, seeded, with the right gradient; LoRA layers use it."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import AutoModelForCausalLM

from tunesmith.methods.lora import LoraConfig as OurLoraConfig
from tunesmith.methods.lora import apply
from tunesmith.train.dropout import FastDropout, fast_dropout, use_fast_dropout

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("p", [0.05, 0.1, 0.3, 0.5, 0.9])
def test_drop_rate_and_mean(p):
    torch.manual_seed(0)
    y = fast_dropout(torch.ones(1000, 1000), p)
    assert (y == 0).float().mean().item() == pytest.approx(p, abs=0.002)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)  # kept values are scaled up: unbiased


def test_gradient_is_the_mask_scaled():
    x = torch.randn(64, 48, requires_grad=True)
    y = fast_dropout(x, 0.1)
    y.sum().backward()
    kept = y != 0
    scale = (y[kept] / x.detach()[kept]).mean()
    assert scale.item() == pytest.approx(1 / 0.9, rel=1e-3)
    torch.testing.assert_close(x.grad, kept.float() * scale)


def test_seeded_and_off_outside_training():
    x = torch.randn(32, 16)
    torch.manual_seed(3)
    a = fast_dropout(x, 0.2)
    torch.manual_seed(3)
    assert torch.equal(a, fast_dropout(x, 0.2))
    assert fast_dropout(x, 0.2, training=False) is x and fast_dropout(x, 0.0) is x
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))


def test_lora_layers_get_fast_dropout(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft_model = apply(model, OurLoraConfig(r=2, dropout=0.1))
    dropouts = [
        d
        for m in peft_model.modules()
        if isinstance(getattr(m, "lora_dropout", None), nn.ModuleDict)
        for d in m.lora_dropout.values()
    ]
    assert dropouts and all(type(d) is FastDropout and d.p == 0.1 for d in dropouts)
    assert all(isinstance(d, nn.Dropout) for d in dropouts)  # PEFT's type checks still see a dropout
    plain = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=2, lora_dropout=0.0, target_modules="all-linear"),
    )
    assert use_fast_dropout(plain) == 0  # p = 0: PEFT uses nn.Identity, nothing to replace
