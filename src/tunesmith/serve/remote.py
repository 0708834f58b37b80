"""`tunesmith chat --url`: the same terminal chat against a running OpenAI-compatible server (ours or any other),
streamed over HTTP. The key comes from $TUNESMITH_API_KEY, never from the command line."""

from __future__ import annotations

import json
import os
import sys
from typing import TextIO

import httpx

from tunesmith.errors import UserError
from tunesmith.evaluate.generate import Decoding
from tunesmith.serve.chat import Reply, StopAwareWriter

CLIENT_KEY_VAR = "TUNESMITH_API_KEY"


def _headers() -> dict[str, str]:
    key = os.environ.get(CLIENT_KEY_VAR)
    return {"Authorization": f"Bearer {key}"} if key else {}


def _fail(url: str, response: httpx.Response) -> UserError:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200] or response.reason_phrase
    hint = f" (set ${CLIENT_KEY_VAR})" if response.status_code == 401 else ""
    return UserError(f"{url}: HTTP {response.status_code}: {message}{hint}")


def served_model(url: str) -> str:
    """The first model the server lists (ours serves one)."""
    try:
        response = httpx.get(f"{url}/models", headers=_headers(), timeout=30)
    except httpx.TransportError as exc:
        raise UserError(f"{url}: cannot connect ({type(exc).__name__}); is `tunesmith serve` running?") from None
    if response.status_code != 200:
        raise _fail(url, response)
    return response.json()["data"][0]["id"]


def stream_remote(url: str, model: str, messages: list[dict[str, str]], decoding: Decoding, out: TextIO) -> str:
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": decoding.max_new_tokens,
        "temperature": decoding.temperature,
        "top_p": decoding.top_p,
        "seed": decoding.seed,
        "stream": True,
    }
    if decoding.stop:
        body["stop"] = list(decoding.stop)
    writer = StopAwareWriter(out, ())
    try:
        with httpx.stream("POST", f"{url}/chat/completions", json=body, headers=_headers(), timeout=600) as response:
            if response.status_code != 200:
                response.read()
                raise _fail(url, response)
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    choices = json.loads(line[6:])["choices"]
                    if choices and choices[0]["delta"].get("content"):
                        writer.write(choices[0]["delta"]["content"])
    except httpx.TransportError as exc:
        raise UserError(f"{url}: connection lost ({type(exc).__name__})") from None
    text = writer.close()
    out.write("\n")
    return text.strip()


def remote_reply(url: str, decoding: Decoding, model: str | None = None, out: TextIO = sys.stdout) -> Reply:
    """A `Reply` that asks the server at `url` (its /v1 base, e.g. http://127.0.0.1:8000/v1)."""
    base = url.rstrip("/")
    name = model or served_model(base)
    return lambda messages: stream_remote(base, name, messages, decoding, out)
