"""Per-micro-batch activation checkpointing: switched by batch size, same loss and gradients either way."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunesmith.data.batching import collate
from tunesmith.data.example import Example
from tunesmith.data.tokenize import encode_examples
from tunesmith.train.memory import ActivationCheckpointing
from tunesmith.train.numerics import accumulate_step

pytestmark = pytest.mark.unit


def _batch(tok):
    rows = [
        Example(line=i, messages=({"role": "user", "content": f"q {i}"}, {"role": "assistant", "content": "a b"}))
        for i in range(4)
    ]
    encoded, _ = encode_examples(tok, rows, 64)
    return collate(encoded, tok.pad_token_id)


def _grads(model, batch):
    model.zero_grad(set_to_none=True)
    model.train()
    total, n = accumulate_step(model, [batch])
    return total / n, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_auto_switches_on_only_for_large_batches(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ac = ActivationCheckpointing(model, "auto", min_tokens=100)
    assert ac.layers and not any(layer.gradient_checkpointing for layer in ac.layers)
    ac.for_batch(99)
    assert not any(layer.gradient_checkpointing for layer in ac.layers)
    ac.for_batch(100)
    assert all(layer.gradient_checkpointing for layer in ac.layers)


def test_checkpointing_does_not_change_the_numbers(tiny_model_dir, tiny_tokenizer):
    batch = _batch(tiny_tokenizer)
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    loss_a, grads_a = _grads(plain, batch)
    recompute = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ActivationCheckpointing(recompute, "on")
    loss_b, grads_b = _grads(recompute, batch)
    assert abs(loss_a - loss_b) < 1e-6
    assert grads_a.keys() == grads_b.keys()
    assert all(torch.allclose(grads_a[k], grads_b[k], atol=1e-6) for k in grads_a)


def test_off_touches_nothing(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ac = ActivationCheckpointing(model, "off")
    ac.for_batch(10**6)
    assert ac.layers == [] and not model.is_gradient_checkpointing


def test_prefix_tuning_trains_without_checkpointing(tiny_model_dir, tiny_tokenizer):
    """Its prefix is a key/value cache, which checkpointed layers drop: auto stays off, on is refused."""
    from peft import PrefixTuningConfig, get_peft_model

    from tunesmith.errors import UserError

    config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), config)
    ac = ActivationCheckpointing(model, "auto", min_tokens=1)
    ac.for_batch(10_000)
    assert ac.mode == "off" and not ac.layers
    loss, _ = _grads(model, _batch(tiny_tokenizer))
    assert math.isfinite(loss)
    with pytest.raises(UserError, match="does not work with prefix_tuning"):
        ActivationCheckpointing(model, "on")


def test_config_refuses_checkpointing_on_with_prefix_tuning():
    from tunesmith.config import load_config
    from tunesmith.errors import UserError

    with pytest.raises(UserError, match="does not work with prefix_tuning"):
        load_config(None, ["method.name=prefix_tuning", "train.activation_checkpointing=on"])


def test_release_freed_memory_trims_the_glibc_heap_on_linux():
    import sys

    from tunesmith.train.memory import release_freed_memory

    assert release_freed_memory() is sys.platform.startswith("linux")
