"""A tuned LoRA model used for inference with its adapter folded into the base weights: same scores, base intact."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PromptTuningConfig, get_peft_model
from transformers import AutoModelForCausalLM

from tunesmith.evaluate.label_scoring import label_logprobs
from tunesmith.methods.loading import can_merge, merged_for_inference

pytestmark = pytest.mark.unit

PROMPTS = [[{"role": "user", "content": f"Is review {i} good? {'great fun' * (i % 3)}"}] for i in range(6)]
LABELS = ["positive", "negative", "neutral"]


def lora_model(tiny_model_dir, **options):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, **options)
    return get_peft_model(base, config).eval()


def base_weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}


@pytest.mark.parametrize("options", [{}, {"use_dora": True}], ids=["lora", "dora"])
def test_merged_scores_match_and_the_base_comes_back(tiny_model_dir, tiny_tokenizer, options):
    model = lora_model(tiny_model_dir, **options)
    before = base_weights(model)
    unmerged = label_logprobs(model, tiny_tokenizer, PROMPTS, LABELS, batch_size=4)
    with model.disable_adapter():
        base_scores = label_logprobs(model, tiny_tokenizer, PROMPTS, LABELS, batch_size=4)
    assert can_merge(model)
    with merged_for_inference(model) as merged:
        assert merged is model and any(layer.merged for layer in _lora_layers(model))
        folded = label_logprobs(merged, tiny_tokenizer, PROMPTS, LABELS, batch_size=4)
    torch.testing.assert_close(folded, unmerged, atol=1e-4, rtol=0)
    assert (folded.argmax(-1) == unmerged.argmax(-1)).all()
    assert not any(layer.merged for layer in _lora_layers(model))
    for name, weight in base_weights(model).items():
        torch.testing.assert_close(weight, before[name], atol=1e-6, rtol=1e-6)
    with model.disable_adapter():  # the base answers again, as before the merge
        torch.testing.assert_close(
            label_logprobs(model, tiny_tokenizer, PROMPTS, LABELS, batch_size=4), base_scores, atol=1e-5, rtol=0
        )


def test_models_that_cannot_merge_run_as_they_are(tiny_model_dir):
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not can_merge(base)
    prompt = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3),
    )
    assert not can_merge(prompt)
    bf16 = lora_model(tiny_model_dir).to(torch.bfloat16)
    assert not can_merge(bf16)  # unfolding bf16 weights would not give the base back exactly
    with merged_for_inference(prompt) as same:
        assert same is prompt


def _lora_layers(model):
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]
