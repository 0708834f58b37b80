"""Preference tuning numerics: per-answer log-probs, the DPO and IPO losses, the pair layout, and equality with
TRL's DPOTrainer on the same rows and weights."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunesmith.data.example import Example
from tunesmith.data.formats import FORMATS, RowError
from tunesmith.data.preference import PreferencePair, encode_pairs
from tunesmith.data.tokenize import IGNORE_INDEX, Encoded
from tunesmith.train.numerics import completion_logps
from tunesmith.train.preference import (
    LOSSES,
    PairScores,
    collate_pairs,
    evaluate_pairs,
    pair_scores,
    preference_objective,
    reference_logps,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def model(tiny_model_dir):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


def _pair(prompt: list[int], chosen: list[int], rejected: list[int], line: int = 1) -> PreferencePair:
    def side(answer: list[int]) -> Encoded:
        return Encoded(prompt + answer, [IGNORE_INDEX] * len(prompt) + answer, line)

    return PreferencePair(side(chosen), side(rejected), line)


def _brute_logps(model, ids: list[int], answer_from: int) -> float:
    """Summed log-prob of ids[answer_from:] from one unpadded full forward pass."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return float(sum(logp[t - 1, ids[t]] for t in range(answer_from, len(ids))))


def test_answer_logps_match_a_full_forward_and_ignore_padding(model):
    pairs = [_pair([5, 6, 7], [8, 9], [10, 11, 12, 13, 14, 15]), _pair([20, 21], [22], [23, 24], line=2)]
    batch = collate_pairs(pairs, pad_id=0)
    with torch.no_grad():
        logps, tokens = completion_logps(model.eval(), batch)
    assert tokens.tolist() == [2, 1, 6, 2]  # chosen rows first, then rejected
    expected = [
        _brute_logps(model, [5, 6, 7, 8, 9], 3),
        _brute_logps(model, [20, 21, 22], 2),
        _brute_logps(model, [5, 6, 7, 10, 11, 12, 13, 14, 15], 3),
        _brute_logps(model, [20, 21, 23, 24], 2),
    ]
    assert logps.tolist() == pytest.approx(expected, abs=1e-4)


def test_sigmoid_and_ipo_losses_follow_their_formulas():
    scores = PairScores(
        chosen=torch.tensor([-3.0, -10.0]),
        rejected=torch.tensor([-5.0, -4.0]),
        ref_chosen=torch.tensor([-4.0, -9.0]),
        ref_rejected=torch.tensor([-4.5, -4.0]),
        chosen_tokens=torch.tensor([2, 4]),
        rejected_tokens=torch.tensor([5, 1]),
    )
    beta = 0.1
    margins = [(-3 + 4) - (-5 + 4.5), (-10 + 9) - (-4 + 4)]  # 1.5, -1.0
    sigmoid = [-math.log(1 / (1 + math.exp(-beta * m))) for m in margins]
    assert LOSSES["sigmoid"](scores, beta).tolist() == pytest.approx(sigmoid, rel=1e-6)
    per_token = [(1 / 2) - (-0.5 / 5), (-1 / 4) - 0.0]
    ipo = [(d - 1 / (2 * beta)) ** 2 for d in per_token]
    assert LOSSES["ipo"](scores, beta).tolist() == pytest.approx(ipo, rel=1e-6)
    chosen_reward, rejected_reward = scores.rewards(beta)
    assert chosen_reward.tolist() == pytest.approx([0.1, -0.1]) and rejected_reward.tolist() == pytest.approx(
        [-0.05, 0]
    )


def test_the_policy_equal_to_its_reference_has_loss_log2_and_no_margin(model):
    pairs = [_pair([5, 6, 7], [8, 9], [10, 11]), _pair([20, 21], [22], [23, 24], line=2)]
    reference_logps(model, pairs, pad_id=0, batch_size=8, bf16=False, what="test")
    objective = preference_objective("sigmoid", beta=0.1)
    loss_sum, count = objective.loss_sum(model, objective.collate(pairs, 0))
    assert count == 2 == objective.count(objective.collate(pairs, 0))
    assert float(loss_sum.detach()) / count == pytest.approx(math.log(2), abs=1e-5)
    loss, metrics = evaluate_pairs(model, pairs, 0, 8, False, "sigmoid", 0.1)
    assert loss == pytest.approx(math.log(2), abs=1e-5)
    assert metrics["reward_margin"] == pytest.approx(0, abs=1e-5) and metrics["reward_accuracy"] == 0.0


def test_a_batch_without_reference_logps_is_refused(model):
    with pytest.raises(ValueError, match="reference log-probs"):
        pair_scores(model, collate_pairs([_pair([5, 6], [7], [8])], 0))


def test_preference_rows_in_both_layouts(tiny_tokenizer):
    fmt = FORMATS["preference"]
    plain = fmt.to_example({"prompt": "2+2?", "chosen": "4", "rejected": "5"}, 3)
    assert plain.target == "4" and plain.rejected == "5" and plain.prompt_messages[-1]["content"] == "2+2?"
    turns = {
        "prompt": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "2+2?"},
        ],
        "chosen": [{"role": "assistant", "content": "4"}],
        "rejected": [{"role": "assistant", "content": "5"}],
    }
    chat = fmt.to_example(turns, 4)
    assert len(chat.messages) == 4 and chat.rejected_messages[-1] == {"role": "assistant", "content": "5"}
    for bad, code in [
        ({"prompt": "q", "chosen": "same", "rejected": " same "}, "same_answers"),
        ({"prompt": "q", "chosen": "a"}, "missing_field"),
        ({"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}, "wrong_shape"),
        ({"prompt": "q", "chosen": "", "rejected": "b"}, "empty_field"),
    ]:
        with pytest.raises(RowError) as info:
            fmt.to_example(bad, 1)
        assert info.value.code == code
    pairs, report = encode_pairs(tiny_tokenizer, [plain, chat], max_length=64)
    assert [p.line for p in pairs] == [3, 4] and report.encoded == 2
    for pair in pairs:  # the same prompt tokens on both sides; only the answer carries labels
        chosen_prompt = [t for t, y in zip(pair.chosen.input_ids, pair.chosen.labels, strict=True) if y == IGNORE_INDEX]
        rejected_prompt = [
            t for t, y in zip(pair.rejected.input_ids, pair.rejected.labels, strict=True) if y == IGNORE_INDEX
        ]
        assert chosen_prompt == rejected_prompt
    cut, cut_report = encode_pairs(tiny_tokenizer, [plain], max_length=4)  # the prompt alone fills 4 tokens
    assert cut == [] and cut_report.dropped_no_target_lines == [3]


def test_a_preference_example_needs_its_chosen_answer():
    with pytest.raises(ValueError, match="chosen answer"):
        Example(line=1, messages=({"role": "user", "content": "q"},), rejected="no")


@pytest.mark.parametrize("loss", ["sigmoid", "ipo"])
def test_loss_equals_trl_dpo_trainer_on_the_same_rows_and_weights(model, tiny_tokenizer, tmp_path, loss):
    """TRL tokenizes the rows; both implementations score those ids with the same LoRA weights."""
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    from peft import LoraConfig

    rows = [
        {"prompt": "What is the capital of France?", "chosen": " Paris.", "rejected": " The capital is Lyon, I think."},
        {"prompt": "The quick brown fox", "chosen": " jumps over the lazy dog.", "rejected": " sleeps."},
        {"prompt": "Extract the name:", "chosen": ' {"name": "Maria"}', "rejected": " Porto"},
    ]
    args = trl.DPOConfig(
        output_dir=str(tmp_path),
        bf16=False,
        report_to=[],
        loss_type=[loss],
        beta=0.5,
        max_length=None,
        per_device_train_batch_size=3,
    )
    # A fresh adapter (TRL's reference is then the base with it disabled, as ours is); a trained-looking adapter
    # handed in would become TRL's reference itself.
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0)
    trainer = trl.DPOTrainer(
        model=model,
        args=args,
        processing_class=tiny_tokenizer,
        train_dataset=datasets.Dataset.from_list(rows),
        peft_config=lora,
    )
    policy = trainer.model
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 30.0)  # B starts at zero: move the policy away from its reference
    policy.eval()
    tokenized = list(trainer.train_dataset)
    with torch.no_grad():
        trl_loss = float(trainer._compute_loss(policy, trainer.data_collator(tokenized), return_outputs=False))

    pairs = [_pair(r["prompt_ids"], r["chosen_ids"], r["rejected_ids"], line=i) for i, r in enumerate(tokenized)]
    with policy.disable_adapter():
        reference_logps(policy, pairs, tiny_tokenizer.pad_token_id, 8, False, "reference")
    objective = preference_objective(loss, beta=0.5)
    with torch.no_grad():
        loss_sum, count = objective.loss_sum(policy, objective.collate(pairs, tiny_tokenizer.pad_token_id))
    assert float(loss_sum) / count == pytest.approx(trl_loss, abs=1e-4)
    assert abs(trl_loss - (math.log(2) if loss == "sigmoid" else 1.0)) > 0.01, trl_loss  # not the trivial value
