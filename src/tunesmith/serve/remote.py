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
from tunesmith.serve.chat import StopAwareWriter

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


class RemoteChat:
    """A `Reply` that asks the server at `url` (its /v1 base, e.g. http://127.0.0.1:8000/v1), and the
    `FeedbackSink` that rates its last answer through the server's /v1/feedback."""

    def __init__(self, url: str, decoding: Decoding, model: str | None = None, out: TextIO = sys.stdout) -> None:
        self.url, self.decoding, self.out = url.rstrip("/"), decoding, out
        self.model = model or served_model(self.url)
        self.last_id: str | None = None

    def __call__(self, messages: list[dict[str, str]]) -> str:
        self.last_id = None
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.decoding.max_new_tokens,
            "temperature": self.decoding.temperature,
            "top_p": self.decoding.top_p,
            "seed": self.decoding.seed,
            "stream": True,
        }
        if self.decoding.stop:
            body["stop"] = list(self.decoding.stop)
        writer = StopAwareWriter(self.out, ())
        try:
            with httpx.stream("POST", f"{self.url}/chat/completions", json=body, headers=_headers(), timeout=600) as r:
                if r.status_code != 200:
                    r.read()
                    raise _fail(self.url, r)
                for line in r.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        chunk = json.loads(line[6:])
                        self.last_id = chunk.get("id", self.last_id)
                        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                            writer.write(chunk["choices"][0]["delta"]["content"])
        except httpx.TransportError as exc:
            raise UserError(f"{self.url}: connection lost ({type(exc).__name__})") from None
        text = writer.close()
        self.out.write("\n")
        return text.strip()

    def note(self, messages: list[dict[str, str]], answer: str) -> None:
        """The server logged the exchange itself."""

    def send(self, rating: int | None, correction: str | None) -> str:
        if self.last_id is None:
            raise UserError("the server gave the last answer no id: it cannot be rated")
        body = {"response_id": self.last_id, "rating": rating, "correction": correction}
        try:
            response = httpx.post(f"{self.url}/feedback", json=body, headers=_headers(), timeout=60)
        except httpx.TransportError as exc:
            raise UserError(f"{self.url}: cannot connect ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise _fail(self.url, response)
        return f"feedback #{response.json()['id']} stored by the server"
