"""Label-likelihood scoring: equal to the training loss on the label tokens, batch-independent, normalised."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunesmith.data.batching import collate
from tunesmith.data.example import Example
from tunesmith.data.tokenize import encode_examples
from tunesmith.errors import UserError
from tunesmith.evaluate.label_scoring import (
    accuracy_by_likelihood,
    encode_all,
    encode_candidates,
    label_logprobs,
    label_probabilities,
    score_batch,
    shared_prefix,
)
from tunesmith.train.numerics import IGNORE_INDEX, token_loss_sum

pytestmark = pytest.mark.unit
LABELS = ["0", "1", "Paris"]
PROMPTS = [
    [{"role": "user", "content": "The quick brown fox"}],
    [{"role": "system", "content": "Answer: 0 or 1."}, {"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "Extract the name and city: Maria lives in Porto. The lazy dog jumps over."}],
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def manual_logprob(model, tokenizer, prompt, label) -> float:
    """-(summed training loss) of the one example prompt + label, computed by the shared numerics."""
    example = Example(line=1, messages=(*prompt, {"role": "assistant", "content": label}))
    encoded, _ = encode_examples(tokenizer, [example], 10_000)
    with torch.no_grad():
        loss, _ = token_loss_sum(model, collate(encoded, tokenizer.pad_token_id))
    return -float(loss)


def test_equals_token_loss_sum(tiny):
    model, tok = tiny
    scores = label_logprobs(model, tok, PROMPTS, LABELS, batch_size=4)
    manual = torch.tensor([[manual_logprob(model, tok, p, label) for label in LABELS] for p in PROMPTS])
    torch.testing.assert_close(scores, manual, atol=1e-4, rtol=1e-5)


def test_batching_matches_one_by_one(tiny):
    model, tok = tiny
    batched = label_logprobs(model, tok, PROMPTS, LABELS, batch_size=3)
    single = torch.cat([label_logprobs(model, tok, [p], LABELS, batch_size=1) for p in PROMPTS])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-5)


def test_probabilities_sum_to_one(tiny):
    model, tok = tiny
    probs = label_probabilities(model, tok, PROMPTS, LABELS, batch_size=2)
    assert probs.shape == (len(PROMPTS), len(LABELS)) and bool((probs >= 0).all())
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(PROMPTS)))


def test_lora_model_matches_numerics(tiny):
    from peft import LoraConfig, get_peft_model

    model, tok = tiny
    # Random (not zero) adapter weights, so the adapter really changes the scores.
    lora = LoraConfig(r=4, init_lora_weights=False)
    peft_model = get_peft_model(AutoModelForCausalLM.from_config(model.config), lora).eval()
    scores = label_logprobs(peft_model, tok, PROMPTS[:2], LABELS, batch_size=2)
    manual = torch.tensor([[manual_logprob(peft_model, tok, p, label) for label in LABELS] for p in PROMPTS[:2]])
    torch.testing.assert_close(scores, manual, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("kind", ["prompt", "prefix"])
def test_prompt_learning_models_match_numerics(tiny, kind):
    """Their virtual tokens are added inside every forward call, so the shared-cache path cannot score them."""
    from peft import PrefixTuningConfig, PromptTuningConfig, get_peft_model

    model, tok = tiny
    torch.manual_seed(0)
    config = (PromptTuningConfig if kind == "prompt" else PrefixTuningConfig)(
        task_type="CAUSAL_LM", num_virtual_tokens=5
    )
    peft_model = get_peft_model(AutoModelForCausalLM.from_config(model.config), config).eval()
    scores = label_logprobs(peft_model, tok, PROMPTS[:3], LABELS, batch_size=2)
    manual = torch.tensor([[manual_logprob(peft_model, tok, p, label) for label in LABELS] for p in PROMPTS[:3]])
    torch.testing.assert_close(scores, manual, atol=1e-4, rtol=1e-5)


def test_candidates_share_the_prompt(tiny):
    _, tok = tiny
    cand = encode_candidates(tok, PROMPTS[0], LABELS)
    for suffix, targets in zip(cand.suffixes, cand.targets, strict=True):
        assert len(suffix) == len(targets) and targets[-1] == IGNORE_INDEX
        assert targets[0] != IGNORE_INDEX  # the suffix starts one token before the first label token
    assert len({tuple(s[:1]) for s in cand.suffixes}) == 1


def test_accuracy_by_likelihood(tiny):
    model, tok = tiny
    examples = [
        Example(line=i, messages=(*p, {"role": "assistant", "content": LABELS[i % 2]})) for i, p in enumerate(PROMPTS)
    ]
    accuracy, predictions = accuracy_by_likelihood(model, tok, examples, LABELS[:2], batch_size=2)
    scores = label_logprobs(model, tok, [e.prompt_messages for e in examples], LABELS[:2])
    assert predictions == [LABELS[i] for i in scores.argmax(-1).tolist()]
    assert accuracy == sum(p == e.target for p, e in zip(predictions, examples, strict=True)) / len(examples)
    with pytest.raises(UserError, match="not among the candidate labels"):
        accuracy_by_likelihood(model, tok, examples, ["0", "Paris"])
    with pytest.raises(UserError, match="two distinct labels"):
        label_logprobs(model, tok, PROMPTS, ["0", "0"])


def test_few_shot_turns_are_context_not_scored(tiny):
    """With earlier question/answer turns (k-shot), only the last answer is the candidate: its score equals
    log p(label | the whole conversation), computed by hand from one full forward."""
    model, tok = tiny
    shots = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "1"},
        {"role": "user", "content": "The lazy dog"},
    ]
    scores = label_logprobs(model, tok, [shots], LABELS, batch_size=1)[0]
    for k, label in enumerate(LABELS):
        example = Example(line=1, messages=(*shots, {"role": "assistant", "content": label}))
        (enc,), _ = encode_examples(tok, [example], 10_000)
        last = max(j for j, t in enumerate(enc.labels) if t != IGNORE_INDEX)
        first = last
        while enc.labels[first - 1] != IGNORE_INDEX:
            first -= 1
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([enc.input_ids])).logits[0].float(), -1)
        manual = sum(float(logp[j - 1, enc.input_ids[j]]) for j in range(first, last + 1))
        assert float(scores[k]) == pytest.approx(manual, abs=1e-4)


def test_prompts_sharing_a_system_turn_run_it_once(tiny, monkeypatch):
    """The shared beginning runs once; every batch continues from its cache with the same scores."""
    from tunesmith.compat import attention

    model, tok = tiny
    system = {"role": "system", "content": "You label sentences. Answer with one label only, nothing else."}
    prompts = [[system, *p[-1:]] for p in PROMPTS]
    encoded = encode_all(tok, prompts, LABELS)
    shared = shared_prefix(model, encoded)
    assert shared is not None and len(shared.ids) >= 8
    assert all(c.prefix[: len(shared.ids)] == shared.ids for c in encoded)
    fast = []
    original = attention.matmul_causal_attention
    monkeypatch.setattr(
        attention,
        "matmul_causal_attention",
        lambda q, k, *a: fast.append(k.shape[2] > q.shape[2]) or original(q, k, *a),
    )
    scores = label_logprobs(model, tok, prompts, LABELS, batch_size=3)
    assert any(fast)  # prefills after the shared prefix took the batched matmuls
    manual = torch.tensor([[manual_logprob(model, tok, p, label) for label in LABELS] for p in prompts])
    torch.testing.assert_close(scores, manual, atol=1e-4, rtol=1e-5)
    with torch.inference_mode():
        unshared = score_batch(model, encoded, tok.pad_token_id)
    torch.testing.assert_close(scores, unshared, atol=1e-4, rtol=1e-5)


def test_no_shared_prefix_when_prompts_differ_early(tiny):
    model, tok = tiny
    other = [{"role": "system", "content": "Different."}, {"role": "user", "content": "hi"}]
    assert shared_prefix(model, encode_all(tok, [PROMPTS[1], other], LABELS)) is None
