"""Decoding settings: greedy answers unchanged, stop strings end a row before them, seeded sampling repeats, and
the chat stream never shows a stop string."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunesmith.evaluate.generate import Decoding, cut_at_stop, generate_all
from tunesmith.serve.chat import StopAwareWriter

pytestmark = pytest.mark.unit
PROMPTS = [[{"role": "user", "content": text}] for text in ("hello there", "What is the capital of France?", "a b")]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():  # larger layer weights: the random model's greedy answers are varied, not blank
        for p in model.model.layers.parameters():
            p.mul_(4.0 if p.dim() == 2 else 1.0)
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def test_greedy_answers_equal_plain_generate(tiny):
    model, tok = tiny
    got = generate_all(model, tok, PROMPTS, Decoding(8), batch_size=2)
    assert all(got)
    for prompt, answer in zip(PROMPTS, got, strict=True):
        ids = tok.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
        assert answer == tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def test_a_stop_string_ends_the_answer_before_it(tiny):
    model, tok = tiny
    for decoding in (Decoding(16), Decoding(16, temperature=1.0, seed=0)):
        _check_stop(model, tok, decoding)


def _check_stop(model, tok, decoding: Decoding) -> None:
    full = generate_all(model, tok, PROMPTS, decoding, batch_size=3)
    row = max(range(len(full)), key=lambda i: len(full[i]))
    pairs = [full[row][i : i + 2] for i in range(1, len(full[row]) - 1) if full[row][i : i + 2].isalnum()]
    assert pairs, full
    stop = pairs[len(pairs) // 2]
    stopped = generate_all(model, tok, PROMPTS, replace(decoding, stop=(stop,)), batch_size=3)
    assert stopped == [cut_at_stop(a, [stop]).strip() for a in full]
    assert stop not in stopped[row] and full[row].startswith(stopped[row]) and len(stopped[row]) < len(full[row])


def test_sampling_repeats_for_a_seed_and_leaves_the_global_generator_alone(tiny):
    model, tok = tiny
    state = torch.random.get_rng_state()
    first = generate_all(model, tok, PROMPTS, Decoding(12, temperature=1.5, seed=3), batch_size=3)
    again = generate_all(model, tok, PROMPTS, Decoding(12, temperature=1.5, seed=3), batch_size=3)
    other = generate_all(model, tok, PROMPTS, Decoding(12, temperature=1.5, seed=4), batch_size=3)
    assert first == again and first != other
    assert torch.equal(torch.random.get_rng_state(), state)


def test_invalid_settings_are_refused():
    for bad in (dict(max_new_tokens=0), dict(temperature=-1.0), dict(top_p=0.0), dict(stop=("",))):
        with pytest.raises(ValueError):
            Decoding(**bad)


def test_cut_at_stop_takes_the_earliest():
    assert cut_at_stop("a, b. c", [".", ","]) == "a"
    assert cut_at_stop("abc", ["x"]) == "abc"


def test_the_chat_stream_never_shows_a_stop_string():
    out = io.StringIO()
    writer = StopAwareWriter(out, ["\nUser:"])
    for piece in ["Hel", "lo there\n", "Us", "er: more", " text"]:
        writer.write(piece)
    assert writer.close() == "Hello there" and out.getvalue() == "Hello there"
    out = io.StringIO()
    writer = StopAwareWriter(out, [])
    for piece in ["a", "b\n", "c"]:
        writer.write(piece)
    assert writer.close() == "ab\nc" == out.getvalue()
