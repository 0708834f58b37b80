"""Packing: examples share rows but never attend across each other or predict each other; loss and gradients
equal the padded layout's."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunesmith.data.batching import TOKEN_MASK, collate, collate_packed, pack_rows, real_tokens
from tunesmith.data.example import Example
from tunesmith.data.tokenize import Encoded, encode_examples
from tunesmith.errors import UserError
from tunesmith.methods import METHODS
from tunesmith.methods.lora import LoraConfig
from tunesmith.train.numerics import IGNORE_INDEX, accumulate_step, count_trainable, token_loss_sum
from tunesmith.train.packing import isolates_packed_examples, resolve_packing

pytestmark = pytest.mark.unit


@pytest.fixture
def model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


ANSWER_WORDS = [30, 2, 3, 25, 1, 4, 28, 2]  # very uneven, so short examples share a row next to long ones


def _chat(i: int) -> Example:
    return Example(
        line=i + 1,
        messages=(
            {"role": "user", "content": f"question {i} " + "the " * (i % 3)},
            {"role": "assistant", "content": "yes " * ANSWER_WORDS[i]},
        ),
    )


@pytest.fixture
def encoded(tiny_tokenizer):
    data, _ = encode_examples(tiny_tokenizer, [_chat(i) for i in range(8)], 128)
    return data


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_pack_rows_first_fit_decreasing():
    rows = pack_rows([5, 2, 9, 3, 4], capacity=9)
    assert sorted(i for row in rows for i in row) == [0, 1, 2, 3, 4]
    assert all(sum([5, 2, 9, 3, 4][i] for i in row) <= 9 for row in rows)
    assert len(rows) == 3  # 9 | 5+4 | 3+2
    assert pack_rows([12, 3], capacity=4) == [[0], [1]]  # an example longer than the capacity gets its own row


def test_packed_layout(encoded, tiny_tokenizer):
    batch = collate_packed(encoded, tiny_tokenizer.pad_token_id)
    padded = collate(encoded, tiny_tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] < len(encoded)  # several examples really share rows
    assert batch["input_ids"].numel() < padded["input_ids"].numel()
    assert "attention_mask" not in batch
    assert real_tokens(batch) == real_tokens(padded) == sum(len(e.input_ids) for e in encoded)
    assert count_trainable(batch["labels"]) == count_trainable(padded["labels"])
    starts = batch["position_ids"] == 0
    assert (batch["labels"][starts] == IGNORE_INDEX).all()  # no example is trained to predict the next one
    assert (batch["labels"][batch[TOKEN_MASK] == 0] == IGNORE_INDEX).all()


def test_nothing_to_pack_keeps_the_padded_layout(tiny_tokenizer):
    same = [Encoded([5, 6, 7, 8], [5, 6, 7, 8], i) for i in range(3)]
    batch = collate_packed(same, tiny_tokenizer.pad_token_id)
    assert "attention_mask" in batch and torch.equal(batch["input_ids"], collate(same, 0)["input_ids"])


def test_packed_loss_and_gradients_equal_padded(model, encoded, tiny_tokenizer):
    pad = tiny_tokenizer.pad_token_id
    total_a, n_a = accumulate_step(model, [collate(encoded[:5], pad), collate(encoded[5:], pad)])
    grads_a = _grads(model)
    model.zero_grad(set_to_none=True)
    packed = [collate_packed(encoded[:5], pad), collate_packed(encoded[5:], pad)]
    assert packed[0]["input_ids"].shape[0] < 5 and packed[1]["input_ids"].shape[0] < 3
    total_b, n_b = accumulate_step(model, packed)
    grads_b = _grads(model)
    assert n_a == n_b
    assert abs(total_a / n_a - total_b / n_b) < 1e-3
    assert abs(total_a / n_a - total_b / n_b) < 1e-5  # fp32: equal up to summation order
    for name, grad in grads_a.items():
        assert torch.allclose(grad, grads_b[name], atol=1e-5), name


def test_text_blocks_do_not_predict_across_examples(model):
    # Raw-text examples are trained on every token, their first one included: packing must drop that label.
    texts = [Encoded(list(range(3 + i, 10 + 2 * i)), list(range(3 + i, 10 + 2 * i)), i) for i in range(4)]
    padded, packed = collate(texts, 0), collate_packed(texts, 0, capacity=64)
    assert packed["input_ids"].shape[0] == 1
    with torch.no_grad():
        loss_a, n_a = token_loss_sum(model, padded)
        loss_b, n_b = token_loss_sum(model, packed)
    assert n_a == n_b == sum(len(t.input_ids) - 1 for t in texts)
    assert abs(float(loss_a) / n_a - float(loss_b) / n_b) < 1e-5


def test_one_long_row_equals_padded(model, encoded, tiny_tokenizer):
    pad = tiny_tokenizer.pad_token_id
    packed = collate_packed(encoded, pad, capacity=10_000)
    assert packed["input_ids"].shape[0] == 1
    with torch.no_grad():
        loss_a, n_a = token_loss_sum(model, collate(encoded, pad))
        loss_b, n_b = token_loss_sum(model, packed)
    assert n_a == n_b and abs(float(loss_a) - float(loss_b)) / n_a < 1e-5


def test_lora_model_packs_and_trains(model, encoded, tiny_tokenizer):
    lora = METHODS["lora"].apply(model, LoraConfig(r=4, dropout=0.0))
    pad = tiny_tokenizer.pad_token_id
    assert resolve_packing("auto", lora)
    total_a, n = accumulate_step(lora, [collate(encoded, pad)])
    grads_a = _grads(lora)
    lora.zero_grad(set_to_none=True)
    total_b, _ = accumulate_step(lora, [collate_packed(encoded, pad)])
    grads_b = _grads(lora)
    assert grads_a and all("lora" in name for name in grads_a)
    assert abs(total_a - total_b) / n < 1e-5
    assert all(torch.allclose(grads_a[k], grads_b[k], atol=1e-5) for k in grads_a)


def test_probe_accepts_transformers_models_and_catches_a_leak(model, monkeypatch):
    assert model.config.use_cache  # as loaded: the packed path must switch the cache off itself
    assert isolates_packed_examples(model)
    model.train()
    isolates_packed_examples(model)
    assert model.training  # the probe restores the mode it found

    original = model.forward

    def ignore_positions(*args, position_ids=None, **kwargs):  # a model that attends across packed examples
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", ignore_positions)
    assert not isolates_packed_examples(model)
    assert resolve_packing("auto", model) is False
    with pytest.raises(UserError, match="train.packing=on"):
        resolve_packing("on", model)
    assert resolve_packing("off", model) is False


def test_packing_on_is_for_sft_only():
    from tunesmith.config import load_config

    assert load_config(None, ["train.packing=on"]).train.packing == "on"
    with pytest.raises(UserError, match="packing"):
        load_config(None, ["task.name=classify", "train.packing=on"])


def test_probe_runs_like_training_on_a_bf16_base_with_fp32_adapters(tiny_model_dir, encoded, tiny_tokenizer):
    from tunesmith.compat.peft_casts import skip_adapter_input_casts
    from tunesmith.train.precision import autocast

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    lora = METHODS["lora"].apply(base, LoraConfig(r=4, dropout=0.0))
    skip_adapter_input_casts(lora)  # bf16 activations into fp32 adapters: only valid under autocast
    assert resolve_packing("on", lora, bf16=True)
    with autocast(True):
        loss, n = token_loss_sum(lora, collate_packed(encoded, tiny_tokenizer.pad_token_id))
    assert n > 0 and torch.isfinite(loss)
