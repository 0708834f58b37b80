"""The one-pass evaluation gives the numbers of the separate passes: label scores, greedy answers and the loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunesmith.compat.attention import NAME, matmul_attention
from tunesmith.data.example import Example
from tunesmith.evaluate.generate import Decoding, generate_all
from tunesmith.evaluate.label_scoring import label_logprobs
from tunesmith.evaluate.prompt_pass import score_and_generate
from tunesmith.evaluate.scoring import loss_from_scores, loss_scores
from tunesmith.train.precision import autocast, inference

pytestmark = pytest.mark.unit
LABELS = ["0", "1", "Paris"]
TEXTS = ["The quick brown fox", "What is the capital of France?", "hi", "Maria lives in Porto.", "jumps over", "a b"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def rows() -> list[Example]:
    return [
        Example(
            line=i + 1,
            messages=(
                {"role": "system", "content": "Answer 0, 1 or Paris."},
                {"role": "user", "content": text},
                {"role": "assistant", "content": LABELS[i % 3]},
            ),
        )
        for i, text in enumerate(TEXTS)
    ]


def test_scores_and_answers_equal_the_separate_passes(tiny):
    model, tok = tiny
    prompts = [list(e.prompt_messages) for e in rows()]
    done = score_and_generate(model, tok, prompts, LABELS, generate_rows=4, decoding=Decoding(6), batch_size=3)
    alone = torch.cat([label_logprobs(model, tok, [p], LABELS, batch_size=1) for p in prompts])
    torch.testing.assert_close(done.scores, alone, atol=1e-4, rtol=1e-5)
    assert done.answers == generate_all(model, tok, prompts[:4], Decoding(6), batch_size=1)
    assert done.continued == 4  # every answer came from the label-scoring cache
    assert len(done.answers) == 4 and done.label_time.wall > 0 and done.generate_time.wall > 0


class Cfg:  # the fields `loss_scores` reads
    class data:  # noqa: N801
        max_length = 512

    class eval:  # noqa: N801
        batch_size = 2

    class train:  # noqa: N801
        precision = "fp32"


def test_loss_read_off_the_label_scores_equals_the_loss_pass(tiny):
    model, tok = tiny
    examples = rows()
    done = score_and_generate(
        model, tok, [list(e.prompt_messages) for e in examples], LABELS, 0, Decoding(4), batch_size=4
    )
    derived = loss_from_scores(examples, LABELS, done, max_length=512)
    assert derived is not None and len(derived) == len(examples)
    passed = loss_scores(model, tok, examples, Cfg, tok.pad_token_id)  # type: ignore[arg-type]
    loss, tokens = sum(x for x, _ in derived), sum(n for _, n in derived)
    assert tokens == passed["tokens"]
    assert loss / tokens == pytest.approx(passed["loss"], abs=1e-5)
    assert loss_from_scores(examples, LABELS, done, max_length=5) is None  # training would truncate: pass runs
    assert loss_from_scores(examples, ["0", "1"], done, max_length=512) is None  # a target off the label set


def test_inference_casts_linear_weights_once_and_restores_them(tiny):
    model, _ = tiny
    ids = torch.tensor([[5, 6, 7, 8, 9], [9, 8, 7, 6, 5]])
    before = {name: p for name, p in model.named_parameters()}
    with torch.no_grad(), autocast(True), matmul_attention(model):  # inference() attends the same way
        expected = model(input_ids=ids).logits
    model.train()
    with inference(model, bf16=True):
        assert model.config._attn_implementation == NAME
        linears = [m for m in model.modules() if type(m) is nn.Linear]
        assert all(m.weight.dtype == torch.bfloat16 for m in linears) and not model.training
        assert model.get_input_embeddings().weight.dtype == torch.float32  # tied to lm_head, not cast
        got = model(input_ids=ids).logits
    assert model.training
    assert all(p is before[name] and p.dtype == torch.float32 for name, p in model.named_parameters())
    assert model.lm_head.weight is model.get_input_embeddings().weight  # still tied
    assert model.config._attn_implementation == "sdpa"
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    model.eval()
