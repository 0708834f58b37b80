"""Precision helpers: bf16 detection setting, and PEFT input casts switched off under autocast."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from tunesmith.compat.peft_casts import input_casts_still_happen, skip_adapter_input_casts
from tunesmith.train import precision
from tunesmith.train.precision import autocast, use_bf16

pytestmark = pytest.mark.unit


def test_precision_settings_resolve():
    assert use_bf16("bf16") and not use_bf16("fp32")


@pytest.mark.parametrize(("bf16_rate", "fp32_rate", "chosen"), [(143.0, 257.0, False), (420.0, 130.0, True)])
def test_auto_precision_follows_the_measured_matmul_rates_and_keeps_them(
    monkeypatch, tmp_path, bf16_rate, fp32_rate, chosen
):
    """A CPU with the bf16 flag whose bf16 matmuls are slower trains in fp32; the measurement is kept, so the next
    process on the machine decides the same way without measuring."""
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path))
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    rates = {torch.bfloat16: bf16_rate, torch.float32: fp32_rate}
    monkeypatch.setattr(precision, "_matmul_rate", lambda dtype: rates[dtype])
    precision.bf16_matmul_speedup.cache_clear()
    try:
        assert use_bf16("auto") is chosen
        kept = list((tmp_path / "cpu").glob("bf16-*.json"))
        assert len(kept) == 1 and '"speedup"' in kept[0].read_text()
        monkeypatch.setattr(precision, "_matmul_rate", lambda dtype: pytest.fail("measured again"))
        precision.bf16_matmul_speedup.cache_clear()
        assert use_bf16("auto") is chosen and precision.bf16_matmul_speedup() == pytest.approx(bf16_rate / fp32_rate)
    finally:
        precision.bf16_matmul_speedup.cache_clear()


def test_skip_adapter_casts_keeps_the_autocast_result(tiny_model_dir):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    model = get_peft_model(
        base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False), autocast_adapter_dtype=True
    )
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad(), autocast(True):
        before = model(input_ids=ids).logits.float()
    assert skip_adapter_input_casts(model) > 0
    with torch.no_grad(), autocast(True):
        after = model(input_ids=ids).logits.float()
    assert torch.allclose(before, after, atol=1e-2)
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if "lora_" in n)
    assert input_casts_still_happen(model) is None


def test_a_peft_that_ignores_the_flag_is_reported(tiny_model_dir, monkeypatch):
    from peft.tuners.tuners_utils import BaseTunerLayer

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear"))
    assert input_casts_still_happen(model) is None  # nothing patched yet: nothing to check
    skip_adapter_input_casts(model)
    monkeypatch.setattr(BaseTunerLayer, "_cast_input_dtype", lambda self, x, dtype: x.to(dtype))
    assert "still cast to fp32" in input_casts_still_happen(model)


def test_import_caps_the_onednn_kernel_cache_unless_the_user_set_it():
    import os
    import subprocess
    import sys

    code = "import os, tunesmith; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    assert subprocess.check_output([sys.executable, "-c", code], env=env, text=True).strip() == "64"
    env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = "7"
    assert subprocess.check_output([sys.executable, "-c", code], env=env, text=True).strip() == "7"


def test_a_sliced_output_layer_input_gets_the_strides_of_its_shape():
    from tunesmith.train.precision import _canonical_strides

    hidden = torch.randn(1, 47, 8)
    last = hidden[:, -1:, :]  # what logits_to_keep=1 hands the output layer: batch stride 47 * 8
    (fixed,) = _canonical_strides(None, (last,))
    assert last.stride() == (376, 8, 1) and fixed.stride() == (8, 8, 1)
    assert fixed.data_ptr() == last.data_ptr() and torch.equal(fixed, last)  # a view, not a copy
    assert _canonical_strides(None, (torch.randn(2, 3, 8),)) is None
    rows = torch.randn(4, 47, 8)[:, -1:, :]  # several rows: not contiguous, copied
    (copied,) = _canonical_strides(None, (rows,))
    assert copied.stride() == (8, 8, 1) and torch.equal(copied, rows)
