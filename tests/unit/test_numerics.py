"""The shared numerics: masking, selective logits, and token-level normalisation under accumulation."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunesmith.data.batching import batch_plan, collate, split_by_tokens
from tunesmith.data.example import Example
from tunesmith.data.tokenize import encode_examples
from tunesmith.train.numerics import (
    IGNORE_INDEX,
    accumulate_step,
    count_trainable,
    is_causal_decoder,
    mean_loss,
    model_inputs,
    token_loss_sum,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def model(tiny_model_dir):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


@pytest.fixture
def encoded(tiny_tokenizer):
    # Deliberately uneven answer lengths: per-micro-batch averaging would weight them wrongly.
    rows = [
        Example(
            line=i + 1,
            messages=(
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": "yes " * (1 + (i * 5) % 11)},
            ),
        )
        for i in range(8)
    ]
    data, _ = encode_examples(tiny_tokenizer, rows, 128)
    return data


def test_selective_head_matches_full_logits(model, encoded, tiny_tokenizer):
    batch = collate(encoded, tiny_tokenizer.pad_token_id)
    loss_sum, n = token_loss_sum(model, batch)
    reference = model(**batch).loss  # HF's own mean over shifted non-ignored labels
    assert n == count_trainable(batch["labels"])
    assert torch.allclose(loss_sum / n, reference, atol=1e-5)


def test_right_padded_causal_batches_drop_the_mask_and_keep_loss_and_gradients(model, encoded, tiny_tokenizer):
    batch = collate(encoded, tiny_tokenizer.pad_token_id)
    assert (batch["attention_mask"] == 0).any()  # the test needs real padding
    assert is_causal_decoder(model.get_decoder())
    assert model_inputs(batch, causal=True)["attention_mask"] is None
    loss_sum, n = token_loss_sum(model, batch)
    (loss_sum / n).backward()
    fast = _grads(model)
    model.zero_grad()
    reference = model(**batch).loss  # with the padding mask
    reference.backward()
    assert torch.allclose(loss_sum / n, reference, atol=1e-6)
    for name, grad in _grads(model).items():
        assert torch.allclose(fast[name], grad, atol=1e-6), name


def test_the_mask_stays_for_left_padding_and_non_causal_models(encoded, tiny_tokenizer):
    left = collate(encoded, tiny_tokenizer.pad_token_id, left_pad=True)
    assert model_inputs(left, causal=True)["attention_mask"] is left["attention_mask"]
    right = collate(encoded, tiny_tokenizer.pad_token_id)
    assert model_inputs(right)["attention_mask"] is right["attention_mask"]
    encoder = torch.nn.Module()
    encoder.is_causal = False
    assert not is_causal_decoder(encoder)
    assert not is_causal_decoder(torch.nn.Linear(2, 2))  # no attention module says it is causal


def test_padding_and_prompt_tokens_carry_no_loss(encoded, tiny_tokenizer):
    batch = collate(encoded, tiny_tokenizer.pad_token_id)
    pads = batch["attention_mask"] == 0
    assert (batch["labels"][pads] == IGNORE_INDEX).all()
    assert count_trainable(batch["labels"]) == sum(e.n_trainable for e in encoded)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_accumulation_normalises_by_tokens(model, encoded, tiny_tokenizer):
    pad = tiny_tokenizer.pad_token_id
    total_a, n_a = accumulate_step(model, [collate(encoded, pad)])
    grads_a = _grads(model)
    model.zero_grad(set_to_none=True)
    total_b, n_b = accumulate_step(model, [collate(encoded[:4], pad), collate(encoded[4:], pad)])
    grads_b = _grads(model)
    assert n_a == n_b
    assert abs(total_a / n_a - total_b / n_b) < 1e-5
    for name, grad in grads_a.items():
        assert torch.allclose(grad, grads_b[name], atol=1e-5), name


def test_mean_loss_of_nothing_is_nan_not_zero():
    assert mean_loss(0.0, 0) != mean_loss(0.0, 0)  # NaN


def test_batch_plan_is_deterministic_and_complete():
    lengths = [5, 9, 3, 7, 2, 8, 4, 6, 1, 10]
    a = batch_plan(lengths, 3, seed=1, epoch=0)
    assert a == batch_plan(lengths, 3, seed=1, epoch=0)
    assert a != batch_plan(lengths, 3, seed=1, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(10))


def test_split_by_tokens_bounds_each_forward_pass():
    lengths = [100, 40, 90, 10, 60, 30, 80, 20]
    parts = split_by_tokens(range(8), lengths, max_tokens=200)
    assert sorted(i for p in parts for i in p) == list(range(8))  # nothing lost, nothing repeated
    assert all(len(p) * max(lengths[i] for i in p) <= 200 for p in parts)
    assert [lengths[p[0]] for p in parts] == sorted((lengths[p[0]] for p in parts), reverse=True)  # longest first
    assert split_by_tokens([0, 1], lengths, max_tokens=None) == [[0, 1]]
    assert split_by_tokens([0, 1], lengths, max_tokens=10_000) == [[0, 1]]
    assert split_by_tokens([0, 2], lengths, max_tokens=50) == [[0], [2]]  # a row longer than the budget stays whole
