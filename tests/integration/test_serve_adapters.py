"""Several LoRA adapters on one base in one server: each request's `model` picks its adapter (or the base), rows of
different adapters decode in one batch, and every answer equals that adapter's own model decoding alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import torch
from test_serve_api import free_port

from conftest import build_tokenizer, tiny_llama_config
from tunesmith.errors import UserError
from tunesmith.serve import adapters
from tunesmith.serve.engine import BASE, Engine
from tunesmith.serve.prompts import chat_prompt_ids
from tunesmith.serve.sampling import Sampling

pytestmark = pytest.mark.integration
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))
QUESTIONS = ["What is the capital of France?", "The quick brown fox", "Extract the name: Maria lives in Porto."]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A tiny base whose greedy answers vary token to token, two LoRA adapters with random weights, and a prompt
    tuning adapter, each saved the way PEFT saves them."""
    from peft import LoraConfig, PromptTuningConfig, get_peft_model
    from transformers import LlamaForCausalLM

    root = tmp_path_factory.mktemp("adapters")
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    base = LlamaForCausalLM(tiny_llama_config(tokenizer, initializer_range=0.2))
    base.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    found = {"base": root / "base"}
    for seed, name in enumerate(["alpha", "beta"], start=1):
        torch.manual_seed(seed)
        lora = get_peft_model(
            LlamaForCausalLM.from_pretrained(root / "base"),
            LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False),
        )
        lora.save_pretrained(root / name)
        found[name] = root / name
    prompt = get_peft_model(
        LlamaForCausalLM.from_pretrained(root / "base"), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    )
    prompt.save_pretrained(root / "prompt")
    found["prompt"] = root / "prompt"
    for name in ("alpha", "beta", "prompt"):  # PEFT records the folder it loaded the base from
        config = json.loads((root / name / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == str(root / "base")
    return found


def alone(model, adapter: str, prompt: list[int], max_tokens: int) -> list[int]:
    """Greedy tokens of one adapter (or BASE) of the served model, one prompt at a time, by the definition: a full
    forward pass over the whole sequence for every new token (no cache, no batch)."""
    sequence = list(prompt)
    with torch.inference_mode():
        for _ in range(max_tokens):
            logits = model(input_ids=torch.tensor([sequence]), adapter_names=[adapter]).logits
            sequence.append(int(logits[0, -1].argmax()))
    return sequence[len(prompt) :]


def own_logits(folders: dict[str, Path], adapter: str, prompt: list[int]) -> torch.Tensor:
    """The logits of a fresh base with only `adapter` loaded: what the served id must compute."""
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(folders["base"]), str(folders[adapter]))
    with torch.inference_mode():
        return model.eval()(input_ids=torch.tensor([prompt])).logits


def test_mixed_adapter_batches_decode_each_row_with_its_own_adapter(folders):
    base = str(folders["base"])
    plan = adapters.plan(base, [f"alpha={folders['alpha']}", f"beta={folders['beta']}"])
    assert plan.default == base and [s.name for s in plan.adapters] == ["alpha", "beta"]
    model, tokenizer = adapters.load(plan)
    engine = Engine(model, tokenizer, max_batch=6, bf16=False, eos_ids=set(), adapters=frozenset({"alpha", "beta"}))
    jobs = [(q, a) for q in QUESTIONS for a in ("alpha", BASE, "beta")]  # every step mixes the three
    try:
        prompts = [tokenizer(q, add_special_tokens=False)["input_ids"] for q, _ in jobs]
        greedy = Sampling(max_tokens=8, temperature=0)
        handles = [engine.submit(p, greedy, adapter=a) for p, (_, a) in zip(prompts, jobs, strict=True)]
        results = [h.result(timeout=120) for h in handles]
        with pytest.raises(ValueError, match="this engine serves"):
            engine.submit(prompts[0], Sampling(max_tokens=2, temperature=0), adapter="gamma")
    finally:
        engine.close()
    answers = {}
    for prompt, (question, adapter), result in zip(prompts, jobs, results, strict=True):
        expected = alone(model, adapter, prompt, 8)
        assert result.text == tokenizer.decode(expected, skip_special_tokens=True), (question, adapter)
        answers.setdefault(question, set()).add(result.text)
    assert all(len(texts) == 3 for texts in answers.values())  # the adapters really answer differently
    for name in ("alpha", "beta"):  # each id runs its own adapter, as loaded alone
        with torch.inference_mode():
            served = model(input_ids=torch.tensor([prompts[0]]), adapter_names=[name]).logits
        assert torch.allclose(served, own_logits(folders, name, prompts[0]), atol=1e-5)


def test_adapters_that_cannot_share_a_batch_are_one_line_errors(folders, tmp_path):
    base = str(folders["base"])
    with pytest.raises(UserError, match="PROMPT_TUNING adapter; only LoRA-type"):
        adapters.plan(base, [f"p={folders['prompt']}"])
    with pytest.raises(UserError, match="give NAME=PATH"):
        adapters.plan(base, ["alpha"])
    with pytest.raises(UserError, match="repeat"):
        adapters.plan(base, [f"a={folders['alpha']}", f"a={folders['beta']}"])
    with pytest.raises(UserError, match="has no adapter_config.json"):
        adapters.plan(base, [f"a={tmp_path}"])
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((folders["alpha"] / "adapter_config.json").read_text())
    (other / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "smollm2-135m"}))
    with pytest.raises(UserError, match="trained on smollm2-135m, not on the served base"):
        adapters.plan(base, [f"o={other}"])


def test_one_server_answers_for_each_adapter_and_lists_them(folders, tmp_path):
    """The real console script: /v1/models lists the base and both adapters; `model` picks the adapter."""
    port, base = free_port(), str(folders["base"])
    cmd = [TUNESMITH, "serve", base, "--port", str(port), "--no-feedback",
           "--adapter", f"alpha={folders['alpha']}", "--adapter", f"beta={folders['beta']}"]  # fmt: skip
    server = subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        assert sorted(m.id for m in client.models.list().data) == sorted([base, "alpha", "beta"])
        messages = [{"role": "user", "content": QUESTIONS[0]}]
        tokenizer = build_tokenizer()
        prompt = chat_prompt_ids(tokenizer, messages)
        model, _ = adapters.load(adapters.plan(base, [f"alpha={folders['alpha']}", f"beta={folders['beta']}"]))
        for name, adapter in [("alpha", "alpha"), ("beta", "beta"), (base, BASE)]:
            reply = client.chat.completions.create(model=name, messages=messages, max_tokens=6, temperature=0)
            expected = tokenizer.decode(alone(model, adapter, prompt, 6), skip_special_tokens=True)
            answer = reply.choices[0].message.content
            assert reply.model == name and answer and expected.startswith(answer), (name, answer, expected)
        with pytest.raises(openai.NotFoundError, match="'alpha', 'beta'"):
            client.chat.completions.create(model="gamma", messages=messages, max_tokens=2)
    finally:
        server.terminate()
        server.wait(30)
