"""Forgetting penalties against hand-computed values on a tiny model: L2-SP, EWC with a known Fisher, the KL
term (zero with the adapter off, equal to the full-logit KL otherwise), the Fisher estimate, replay picks."""

from __future__ import annotations

import contextlib

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import AutoModelForCausalLM

from tunesmith.config import load_config
from tunesmith.config.forgetting import EWCConfig
from tunesmith.data.batching import collate
from tunesmith.data.example import Example
from tunesmith.data.tokenize import encode_examples
from tunesmith.errors import UserError
from tunesmith.forgetting import ewc, kl_to_base, l2_sp
from tunesmith.train.numerics import IGNORE_INDEX, token_loss_and_kl_sums, token_loss_sum
from tunesmith.train.penalties import KLPenalty, WeightPenalty
from tunesmith.train.replay import Replay, rows_per_batch

pytestmark = pytest.mark.unit


def test_l2_sp_value_and_gradient_by_hand():
    weight = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    penalty = l2_sp.build(0.5, {"w": weight})
    with torch.no_grad():
        weight.add_(torch.tensor([0.1, -0.2, 0.0]))
    assert penalty.value() == pytest.approx(0.5 * (0.01 + 0.04))
    assert penalty.add_gradient() == pytest.approx(0.025)
    assert torch.allclose(weight.grad, torch.tensor([0.1, -0.2, 0.0]))  # 2·λ·(θ − θ₀)


def test_ewc_with_a_known_fisher():
    weight = nn.Parameter(torch.zeros(2, 2))
    fisher = {"w": torch.tensor([[1.0, 0.0], [4.0, 0.5]])}
    penalty = ewc.build(EWCConfig(weight=2.0), {"w": weight}, fisher)
    with torch.no_grad():
        weight.copy_(torch.tensor([[1.0, 5.0], [0.5, -2.0]]))
    expected = 2.0 * (1 * 1 + 0 * 25 + 4 * 0.25 + 0.5 * 4)
    assert penalty.value() == pytest.approx(expected)
    weight.grad = torch.ones(2, 2)  # the task's gradient is kept and added to
    penalty.add_gradient()
    assert torch.allclose(weight.grad, 1 + 2 * 2.0 * fisher["w"] * weight.detach())


def test_frozen_for_now_weights_get_no_penalty_gradient():
    weight = nn.Parameter(torch.ones(3), requires_grad=False)
    penalty = WeightPenalty("l2_sp", 1.0, {"w": weight}, {"w": torch.zeros(3)})
    assert penalty.add_gradient() == 0.0 and weight.grad is None  # AdamW would decay a weight given a grad


@pytest.fixture
def model(tiny_model_dir):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


@pytest.fixture
def batch(tiny_tokenizer):
    rows = [
        Example(line=i + 1, messages=({"role": "user", "content": f"q {i}"}, {"role": "assistant", "content": "a b"}))
        for i in range(4)
    ]
    encoded, _ = encode_examples(tiny_tokenizer, rows, 64)
    return collate(encoded, tiny_tokenizer.pad_token_id)


def _full_logit_kl(base_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> float:
    keep = labels[:, 1:] != IGNORE_INDEX
    base, tuned = (torch.log_softmax(x[:, :-1][keep].float(), -1) for x in (base_logits, logits))
    return float((base.exp() * (base - tuned)).sum())


def test_kl_is_zero_with_the_adapter_off_and_matches_full_logits_after_training(model, batch):
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    penalty, copy_bytes = kl_to_base.build(1.0, peft, on_replay=False)
    assert copy_bytes == 0  # the base is the same weights with the adapter off
    ce, kl, tokens = token_loss_and_kl_sums(peft, penalty.reference, batch)
    plain, n = token_loss_sum(peft, batch)
    assert float(kl.detach()) == pytest.approx(0.0, abs=1e-6) and tokens == n and torch.allclose(ce, plain, atol=1e-5)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    ce, kl, _ = token_loss_and_kl_sums(peft, penalty.reference, batch)
    with torch.no_grad(), peft.disable_adapter():
        base_logits = peft(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = peft(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert float(kl.detach()) > 1e-4
    assert float(kl.detach()) == pytest.approx(_full_logit_kl(base_logits, logits, batch["labels"]), rel=1e-4)
    kl.backward()  # gradients flow into the adapter only
    assert any(p.grad is not None for n, p in peft.named_parameters() if "lora_" in n)


def test_full_fine_tuning_compares_with_a_frozen_bf16_copy(model, batch):
    for param in model.parameters():
        param.requires_grad_(True)
    penalty, copy_bytes = kl_to_base.build(1.0, model, on_replay=False)
    assert copy_bytes == sum(p.numel() for p in model.parameters()) * 2
    with torch.no_grad():
        model.lm_head.weight.mul_(1.5)
    with penalty.reference() as ref:
        assert ref is not model and not any(p.requires_grad for p in ref.parameters())
    _, kl, _ = token_loss_and_kl_sums(model, penalty.reference, batch)
    assert float(kl.detach()) > 0


def test_fisher_is_the_mean_squared_gradient(model, batch, tiny_tokenizer):
    params = {n: p for n, p in model.named_parameters() if "layers.0.mlp" in n}
    rows, _ = encode_examples(
        tiny_tokenizer,
        [Example(line=1, messages=({"role": "user", "content": "q"}, {"role": "assistant", "content": "a b c"}))],
        64,
    )
    fisher = ewc.fisher_diagonal(
        model, params, rows, tiny_tokenizer.pad_token_id, EWCConfig(batches=2, batch_size=1, normalize=False)
    )
    loss, n = token_loss_sum(model.eval(), collate(rows, tiny_tokenizer.pad_token_id))
    grads = torch.autograd.grad(loss / n, list(params.values()))
    for (name, _), grad in zip(params.items(), grads, strict=True):
        assert torch.allclose(fisher[name], grad**2, atol=1e-10, rtol=1e-4), name  # two equal batches: the mean
    assert all(p.grad is None for p in model.parameters())
    normalised = ewc.fisher_diagonal(
        model, params, rows, tiny_tokenizer.pad_token_id, EWCConfig(batches=1, batch_size=1)
    )
    total = sum(float(f.sum()) for f in normalised.values()) / sum(f.numel() for f in normalised.values())
    assert total == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize(("batch_size", "fraction", "expected"), [(8, 0.2, 2), (8, 0.5, 8), (4, 0.25, 1), (1, 0.1, 1)])
def test_rows_per_batch(batch_size, fraction, expected):
    assert rows_per_batch(batch_size, fraction) == expected


def test_replay_picks_are_seeded_distinct_and_differ_by_step():
    replay = Replay(rows=list(range(50)), per_batch=5, seed=3)
    first = replay.pick(1, 0)
    assert first == replay.pick(1, 0) and len(set(first)) == 5
    assert first != replay.pick(2, 0) and first != replay.pick(1, 1)
    assert len(Replay(rows=[7, 8], per_batch=5).pick(1, 0)) == 5  # fewer rows than a batch: drawn with repeats


def test_config_refuses_token_level_mitigations_outside_language_modelling():
    with pytest.raises(UserError, match=r"forgetting.kl_to_base works on next-token losses.*classify"):
        load_config(None, ["task.name=classify", "forgetting.kl_to_base.weight=0.1"])
    with pytest.raises(UserError, match=r"kl_to_base.on=replay needs forgetting.replay.data"):
        load_config(None, ["forgetting.kl_to_base.weight=0.1", "forgetting.kl_to_base.on=replay"])
    with pytest.raises(UserError, match=r"fraction"):
        load_config(None, ["forgetting.replay.data=reference", "forgetting.replay.fraction=1"])
    assert load_config(None, ["task.name=classify", "forgetting.l2_sp.weight=0.1"]).forgetting.active() == ["l2_sp"]


def test_unknown_forgetting_key_suggests_the_nearest():
    with pytest.raises(UserError, match="l2_sp"):
        load_config(None, ["forgetting.l2sp.weight=1"])


def test_kl_penalty_tally_resets():
    penalty = KLPenalty(0.5, lambda: contextlib.nullcontext(), on_replay=True)
    penalty._kl_sum, penalty._tokens = 4.0, 8
    assert penalty.take() == (0.25, 2.0) and penalty.take() == (0.0, 0.0)


def test_replay_rows_weigh_their_share_whatever_their_length(model, batch, tiny_tokenizer):
    """loss = (1 − f)·task mean + f·replay mean, each a mean over its own trained tokens."""
    from tunesmith.train.numerics import accumulate_step

    long_rows, _ = encode_examples(
        tiny_tokenizer,
        [Example(line=1, messages=({"role": "user", "content": "q"}, {"role": "assistant", "content": "w " * 30}))],
        64,
    )
    replay = collate(long_rows, tiny_tokenizer.pad_token_id)
    share = Replay(rows=long_rows, per_batch=1, task_rows=4).share
    assert share == pytest.approx(0.2)
    accumulate_step(model, [batch], scale=1 - share)
    accumulate_step(model, [replay], scale=share)
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    (task_sum, task_n), (replay_sum, replay_n) = token_loss_sum(model, batch), token_loss_sum(model, replay)
    ((1 - share) * task_sum / task_n + share * replay_sum / replay_n).backward()
    assert all(torch.allclose(g, p.grad, atol=1e-6) for g, p in zip(grads, model.parameters(), strict=True))


def test_the_report_plots_penalties_and_replay_loss_beside_the_task_loss():
    from tunesmith.evaluate.report.plots import loss_curves

    rows = [
        {"step": s, "train_loss": 2.0 / s, "replay_loss": 1.5, "penalty_l2_sp": 0.01 * s, "penalty_kl_to_base": 0.1}
        for s in range(1, 12)
    ]
    rows.append({"step": 11, "val_loss": 0.5})
    assert loss_curves(rows).startswith("data:image/png;base64,")
