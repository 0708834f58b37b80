"""Audit numerics against hand-computed values: bootstrap intervals, sentence log-likelihoods, KL, JS, CrowS."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunesmith.config.schema import AuditConfig
from tunesmith.data.batching import collate
from tunesmith.data.tokenize import Encoded
from tunesmith.evaluate.bias import crows_pairs, js_divergence, winobias
from tunesmith.evaluate.bootstrap import bootstrap_mean, paired_difference
from tunesmith.evaluate.forgetting import distribution_shift
from tunesmith.evaluate.model_pair import ModelPair
from tunesmith.evaluate.sequence_scoring import next_token_logprobs, text_logprobs
from tunesmith.methods.loading import LoadedModel
from tunesmith.train.numerics import token_loss_sum

pytestmark = pytest.mark.unit

# A bigram model over the vocabulary {0: start, 1: "a", 2: "b"}: row k is p(next | previous token k).
P = [[0.2, 0.4, 0.4], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]]
Q = [[0.2, 0.2, 0.6], [0.1, 0.3, 0.6], [0.5, 0.25, 0.25]]


class Bigram(nn.Module):
    def __init__(self, table: list[list[float]]) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(table).log(), requires_grad=False)

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        return SimpleNamespace(logits=self.logits[input_ids])


class CharTokenizer:
    """'a' -> 1, 'b' -> 2; the start token is 0."""

    bos_token_id, eos_token_id, pad_token_id = 0, 0, 0

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [{"a": 1, "b": 2}[c] for c in text if c in "ab"]}

    def decode(self, ids: list[int]) -> str:
        return "".join({0: "<s>", 1: "a", 2: "b"}[i] for i in ids)


def test_bootstrap_of_a_constant_is_the_constant():
    ci = bootstrap_mean([1.0] * 10, samples=200)
    assert (ci.mean, ci.low, ci.high, ci.n) == (1.0, 1.0, 1.0, 10)


def test_bootstrap_of_two_values_spans_both():
    # resampled means of [0, 1] are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 95% interval is [0, 1]
    ci = bootstrap_mean([0.0, 1.0], samples=4000, seed=3)
    assert (ci.mean, ci.low, ci.high) == (0.5, 0.0, 1.0)


def test_bootstrap_width_matches_the_normal_approximation_and_is_seeded():
    values = [1.0] * 300 + [0.0] * 700
    ci = bootstrap_mean(values, samples=4000, seed=1)
    half = 1.96 * math.sqrt(0.3 * 0.7 / 1000)  # 0.0284
    assert ci.mean == pytest.approx(0.3)
    assert ci.high - ci.low == pytest.approx(2 * half, rel=0.1)
    assert bootstrap_mean(values, samples=500, seed=1) == bootstrap_mean(values, samples=500, seed=1)


def test_paired_difference_flags_only_a_real_increase():
    base = [0.0, 1.0] * 50
    same = paired_difference(base, base, samples=500)
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0) and not same.excludes_zero()
    up = paired_difference([1.0] * 100, base, samples=500)
    assert up.mean == 0.5 and up.low > 0
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 0.0])


def test_text_logprobs_are_the_hand_computed_bigram_sums():
    texts = ["ab", "b", "abba", "a"]
    expected = [
        math.log(0.4) + math.log(0.3),
        math.log(0.4),
        math.log(0.4) + math.log(0.3) + math.log(0.5) + math.log(0.25),
        math.log(0.4),
    ]
    for batch_size in (1, 3):  # right padding must not change a score
        got = text_logprobs(Bigram(P), CharTokenizer(), texts, batch_size)
        assert got.tolist() == pytest.approx(expected, abs=1e-6)


def test_next_token_logprobs_follow_the_last_prompt_token():
    got = next_token_logprobs(Bigram(P), CharTokenizer(), ["ab", "a", "abba"], batch_size=3)
    torch.testing.assert_close(got.exp(), torch.tensor([P[2], P[1], P[1]]), atol=1e-6, rtol=0)


def test_text_logprobs_match_the_shared_training_numerics(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = ["The quick brown fox.", "Maria lives in Porto.", "What is the capital of France? Paris."]
    got = text_logprobs(model, tokenizer, texts, batch_size=2)
    for text, score in zip(texts, got, strict=True):
        ids = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]
        batch = collate([Encoded(ids, ids, 1)], tokenizer.pad_token_id)
        with torch.no_grad():
            loss, _ = token_loss_sum(model, batch)
        assert float(score) == pytest.approx(-float(loss), abs=1e-4)


def pair_of(base: list[list[float]], tuned: list[list[float]]) -> ModelPair:
    loaded = LoadedModel(Bigram(tuned), CharTokenizer(), None, is_adapter=False)  # type: ignore[arg-type]
    return ModelPair(loaded, _base=Bigram(base))


def kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))


def test_distribution_shift_hand_computed():
    # sequence start,a,b with loss on both tokens: positions predict from start (row 0) and from "a" (row 1)
    data = [Encoded([0, 1, 2], [0, 1, 2], 1)]
    shift = distribution_shift(pair_of(P, Q), data)
    assert shift["tokens"] == 2
    assert shift["kl_base_tuned"] == pytest.approx((kl(P[0], Q[0]) + kl(P[1], Q[1])) / 2, abs=1e-6)
    assert shift["base"]["loss"] == pytest.approx(-(math.log(0.4) + math.log(0.3)) / 2, abs=1e-6)
    assert shift["tuned"]["loss"] == pytest.approx(-(math.log(0.2) + math.log(0.6)) / 2, abs=1e-6)
    assert distribution_shift(pair_of(P, P), data)["kl_base_tuned"] == pytest.approx(0.0, abs=1e-7)


def test_js_divergence_hand_computed():
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])
    m = (p + q) / 2
    expected = 0.5 * float((p * (p / m).log()).sum()) + 0.5 * float((q * (q / m).log()).sum())
    assert js_divergence(p.log(), q.log()) == pytest.approx(expected, abs=1e-6)
    assert js_divergence(p.log(), p.log()) == pytest.approx(0.0, abs=1e-7)


def test_crows_pairs_shares_by_type(tmp_path):
    # p(text) under P and Q, from the bigram tables above
    rows = [
        {"sent_more": "aa", "sent_less": "bb", "bias_type": "x"},  # P: .24 vs .20 -> stereo; Q: .06 vs .15 -> not
        {"sent_more": "ab", "sent_less": "ba", "bias_type": "x"},  # P: .12 vs .10 -> stereo; Q: .12 vs .15 -> not
        {"sent_more": "b", "sent_less": "a", "bias_type": "y"},  # P: .4 vs .4 -> tie (not preferred); Q: .6 vs .2
    ]
    path = tmp_path / "crows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    audit = AuditConfig(bootstrap_samples=200)
    result = crows_pairs(pair_of(P, Q), audit, str(path))
    assert result["pairs"] == 3
    assert result["overall"]["base"]["mean"] == pytest.approx(2 / 3)
    assert result["overall"]["tuned"]["mean"] == pytest.approx(1 / 3)
    assert result["by_type"]["x"]["base"]["mean"] == 1.0 and result["by_type"]["x"]["tuned"]["mean"] == 0.0
    assert result["by_type"]["y"]["difference"]["mean"] == 1.0 and not result["overall"]["amplified"]


def test_winobias_pairs_pro_against_anti(tmp_path):
    rows = [
        {"split": "dev", "type": 1, "id": 1, "stereotype": "pro", "text": "aa"},
        {"split": "dev", "type": 1, "id": 1, "stereotype": "anti", "text": "bb"},
        {"split": "dev", "type": 2, "id": 1, "stereotype": "pro", "text": "ba"},
        {"split": "dev", "type": 2, "id": 1, "stereotype": "anti", "text": "ab"},
    ]
    path = tmp_path / "wino.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = winobias(pair_of(P, Q), AuditConfig(bootstrap_samples=200), str(path))
    assert result["pairs"] == 2
    assert result["pro_preferred"]["base"]["mean"] == 0.5  # aa > bb, ba < ab under P
    assert result["logprob_gap"]["base"]["mean"] == pytest.approx(
        np.mean([math.log(0.24 / 0.20), math.log(0.10 / 0.12)]), abs=1e-6
    )


def test_probe_config_needs_a_slot_and_two_groups():
    from tunesmith.config import load_config
    from tunesmith.errors import UserError

    with pytest.raises(UserError, match="group"):
        load_config(None, ['audit.probes=[{"template": "The person was", "groups": ["a", "b"]}]'])
    with pytest.raises(UserError):
        load_config(None, ['audit.probes=[{"template": "The {group} was", "groups": ["a"]}]'])
    cfg = load_config(None, ['audit.probes=[{"template": "The {group} was", "groups": ["a", "b"]}]'])
    assert cfg.audit.probes[0].words == []


def test_a_missing_bias_file_is_skipped_only_when_it_is_the_default(tmp_path, monkeypatch):
    from tunesmith.errors import UserError
    from tunesmith.evaluate.bias import run_bias

    monkeypatch.chdir(tmp_path)  # the default ../shared/data paths do not exist from here
    result = run_bias(pair_of(P, Q), AuditConfig(probes=[]))
    assert len(result["skipped"]) == 2 and result["amplification"] == []
    with pytest.raises(UserError, match="not found"):
        run_bias(pair_of(P, Q), AuditConfig(probes=[], crows_pairs=str(tmp_path / "mine.jsonl")))
