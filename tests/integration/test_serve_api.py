"""`tunesmith serve` on a tiny model, called by the real `openai` client over real HTTP (uvicorn on a free port):
chat and completions, streaming with usage, concurrency, API keys (added and revoked while serving), and every
bad request a 4xx with OpenAI's JSON error shape while the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import torch
import uvicorn

from tunesmith.models import load_causal_lm, load_tokenizer
from tunesmith.serve.app import Limits, Served, create_app
from tunesmith.serve.engine import Engine
from tunesmith.serve.keys import KeyStore
from tunesmith.serve.prompts import chat_prompt_ids, text_ids

pytestmark = pytest.mark.integration
TUNESMITH = str(Path(sys.executable).with_name("tunesmith"))
KEY, OTHER_KEY = "k-" + "a" * 30, "k-" + "b" * 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(app) -> tuple[str, uvicorn.Server, threading.Thread]:
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", uv, thread


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    model, tokenizer = load_causal_lm(str(tiny_model_dir)).eval(), load_tokenizer(str(tiny_model_dir))
    engine = Engine(model, tokenizer, max_batch=4, max_queue=16, bf16=False)  # 10 clients at once never queue out
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys_file.write_text(f"# who may call\nalice:{KEY}\n")
    served = Served("tiny", engine, context_window=256, created=0)
    app = create_app(served, KeyStore(keys_file), Limits(max_body_bytes=20_000, max_tokens=64, max_n=4))
    url, uv, thread = start(app)
    yield {"url": url, "keys": keys_file, "model": engine.model, "tokenizer": engine.tokenizer}
    uv.should_exit = True
    thread.join(10)


def client(server, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=key, max_retries=0)


def greedy(server, messages: list[dict], max_tokens: int) -> str:
    model, tokenizer = server["model"], server["tokenizer"]
    ids = torch.tensor([chat_prompt_ids(tokenizer, messages)])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=0)
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
LONG = "capital " * 300  # over the 256-token window, under the body limit


def test_chat_completion_matches_greedy_generate_and_counts_usage(server):
    reply = client(server).chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12, temperature=0)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == greedy(server, MESSAGES, 12)
    assert reply.usage.prompt_tokens == len(chat_prompt_ids(server["tokenizer"], MESSAGES))
    assert reply.usage.completion_tokens >= 1 and reply.usage.total_tokens == (
        reply.usage.prompt_tokens + reply.usage.completion_tokens
    )


def test_streaming_with_usage_gives_the_same_text_and_a_last_usage_chunk(server):
    plain = client(server).chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12, temperature=0)
    chunks = list(
        client(server).chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=12, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.usage is None for c in chunks[:-1]) and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        plain.choices[0].finish_reason
    ]


def test_completions_n_and_models(server):
    api = client(server)
    assert [m.id for m in api.models.list().data] == ["tiny"]
    reply = api.completions.create(model="tiny", prompt="The quick brown", max_tokens=5, n=3, temperature=1, seed=3)
    assert reply.object == "text_completion" and [c.index for c in reply.choices] == [0, 1, 2]
    again = api.completions.create(model="tiny", prompt="The quick brown", max_tokens=5, n=3, temperature=1, seed=3)
    assert [c.text for c in again.choices] == [c.text for c in reply.choices]  # seeded: repeatable
    prompt = len(text_ids(server["tokenizer"], "The quick brown"))
    assert reply.usage.prompt_tokens == prompt  # once, not once per choice


def test_concurrent_async_clients_all_succeed(server):
    async def run() -> list[str]:
        api = openai.AsyncOpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0)
        calls = [
            api.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": f"Say {i}"}], max_tokens=8, temperature=0
            )
            for i in range(10)
        ]
        replies = await asyncio.gather(*calls)
        await api.close()
        return [r.choices[0].finish_reason for r in replies]

    assert all(reason in {"stop", "length"} for reason in asyncio.run(run()))


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "other", "messages": MESSAGES}, 404, "model_not_found"),
        ({"model": "tiny", "messages": MESSAGES, "max_tokens": 100000}, 400, None),
        ({"model": "tiny", "messages": MESSAGES, "n": 1000}, 400, None),
        ({"model": "tiny", "messages": []}, 400, None),
        ({"model": "tiny", "messages": MESSAGES, "tools": [{"type": "function"}]}, 400, None),
        ({"model": "tiny", "messages": [{"role": "user", "content": "word " * 5000}]}, 413, "body_too_large"),
        ({"model": "tiny", "messages": [{"role": "user", "content": LONG}]}, 400, "context_length_exceeded"),
        ({"model": "tiny", "messages": [{"role": "wizard", "content": "hi"}]}, 400, None),
    ],
)
def test_bad_requests_get_a_json_4xx_and_the_server_keeps_serving(server, body, status, code):
    headers = {"Authorization": f"Bearer {KEY}"}
    response = httpx.post(server["url"] + "/v1/chat/completions", json=body, headers=headers, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and (code is None or error["code"] == code)
    assert httpx.get(server["url"] + "/health", timeout=10).status_code == 200


def test_a_chunked_body_over_the_limit_is_a_413(server):
    def chunks():
        yield b'{"model": "tiny", "messages": [{"role": "user", "content": "'
        for _ in range(30):
            yield b"x" * 1000  # 30 kB, no Content-Length: counted as it arrives
        yield b'"}]}'

    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    response = httpx.post(server["url"] + "/v1/chat/completions", content=chunks(), headers=headers, timeout=30)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


def test_invalid_json_is_a_400(server):
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    response = httpx.post(server["url"] + "/v1/chat/completions", content=b"{not json", headers=headers, timeout=30)
    assert response.status_code == 400 and "error" in response.json()


def test_every_route_but_health_needs_a_key_and_keys_change_without_restart(server):
    url = server["url"]
    assert httpx.get(url + "/health", timeout=10).status_code == 200
    for method, path in [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions")]:
        response = httpx.request(method, url + path, json={}, timeout=10)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(server, OTHER_KEY).models.list()
    keys: Path = server["keys"]
    keys.write_text(f"alice:{KEY}\nbob:{OTHER_KEY}\n")
    os.utime(keys, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert client(server, OTHER_KEY).models.list().data[0].id == "tiny"  # added while serving
    keys.write_text(f"bob:{OTHER_KEY}\n")
    os.utime(keys, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    with pytest.raises(openai.AuthenticationError):
        client(server, KEY).models.list()  # revoked while serving
    keys.write_text(f"alice:{KEY}\n")
    os.utime(keys, ns=(time.time_ns(), time.time_ns() + 3_000_000))


def test_a_client_that_leaves_mid_stream_frees_its_slot(server):
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 64, "stream": True}
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream("POST", server["url"] + "/v1/chat/completions", json=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200
        next(r.iter_lines())
    deadline = time.monotonic() + 10
    while httpx.get(server["url"] + "/health", timeout=10).json()["active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.get(server["url"] + "/health", timeout=10).json()["active"] == 0


def test_metrics_count_requests_and_tokens(server):
    client(server).chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, temperature=0)
    assert httpx.get(server["url"] + "/metrics", timeout=10).status_code == 401
    text = httpx.get(server["url"] + "/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).text
    assert 'tunesmith_requests_total{route="/v1/chat/completions",status="200"}' in text
    completion = next(line for line in text.splitlines() if line.startswith("tunesmith_completion_tokens_total"))
    assert float(completion.split()[-1]) >= 1
    assert "tunesmith_request_seconds_bucket" in text and "tunesmith_queue_depth" in text


def test_per_key_rate_limit_is_a_429_with_retry_after(engine, tmp_path):
    from tunesmith.serve.limits import KeyLimits

    keys = tmp_path / "keys.txt"
    keys.write_text(f"alice:{KEY}\nbob:{OTHER_KEY}\n")
    app = create_app(Served("tiny", engine, 256, 0), KeyStore(keys), Limits(), KeyLimits(requests_per_minute=2))
    url, uv, thread = start(app)
    try:
        api = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        for _ in range(2):
            api.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2)
        with pytest.raises(openai.RateLimitError) as refused:
            api.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2)
        assert int(refused.value.response.headers["Retry-After"]) == 30
        other = openai.OpenAI(base_url=url + "/v1", api_key=OTHER_KEY, max_retries=0)
        assert other.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2).choices
    finally:
        uv.should_exit = True
        thread.join(10)


def test_chat_url_talks_to_the_running_server(server):
    url = server["url"] + "/v1"
    command = [TUNESMITH, "chat", "-", "--url", url, "--prompt", "Say hi", "--max-new-tokens", "6"]
    env = {**os.environ, "TUNESMITH_API_KEY": KEY}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    expected = client(server).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Say hi"}], max_tokens=6, temperature=0
    )
    assert done.returncode == 0 and done.stdout.strip() == expected.choices[0].message.content.strip(), done.stderr
    env.pop("TUNESMITH_API_KEY")
    refused = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode != 0 and len(lines) == 1 and "HTTP 401" in lines[0] and "TUNESMITH_API_KEY" in lines[0]


def test_a_full_queue_is_a_429_with_retry_after(tiny_model_dir):
    model, tokenizer = load_causal_lm(str(tiny_model_dir)).eval(), load_tokenizer(str(tiny_model_dir))
    small = Engine(model, tokenizer, max_batch=1, max_queue=1, bf16=False, eos_ids=set())
    url, uv, thread = start(create_app(Served("tiny", small, 256, 0), None))
    try:

        async def burst() -> list[httpx.Response]:
            body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 60}
            async with httpx.AsyncClient(timeout=120) as http:
                return await asyncio.gather(*(http.post(url + "/v1/chat/completions", json=body) for _ in range(6)))

        responses = asyncio.run(burst())
        refused = [r for r in responses if r.status_code == 429]
        assert refused and all(r.headers["Retry-After"] == "1" for r in refused)
        assert all(r.json()["error"]["code"] == "queue_full" for r in refused)
        assert all(r.status_code in {200, 429} for r in responses)
    finally:
        uv.should_exit = True
        thread.join(10)
        small.close()


def test_the_cli_refuses_a_public_address_without_keys(tiny_model_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TUNESMITH_API_KEYS"}
    result = subprocess.run(
        [TUNESMITH, "serve", str(tiny_model_dir), "--host", "0.0.0.0"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and "without API keys" in lines[0], result.stderr
    assert not list(tmp_path.iterdir())  # no feedback database either


def test_the_cli_serves_a_model_over_http(tiny_model_dir, tmp_path):
    port = free_port()
    env = {**os.environ, "TUNESMITH_API_KEYS": f"ci:{KEY}"}
    proc = subprocess.Popen(
        [TUNESMITH, "serve", str(tiny_model_dir), "--port", str(port), "--max-tokens", "16"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline, up = time.monotonic() + 60, False
        while time.monotonic() < deadline and not up and proc.poll() is None:
            try:
                up = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                time.sleep(0.2)
        assert up, proc.stdout.read() if proc.poll() is not None else "server did not come up"
        api = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
        reply = api.chat.completions.create(model=str(tiny_model_dir), messages=MESSAGES, max_tokens=4)
        assert reply.choices[0].finish_reason in {"stop", "length"}
        assert json.loads(httpx.get(f"http://127.0.0.1:{port}/health").text)["status"] == "ok"
    finally:
        proc.terminate()
        proc.wait(30)
