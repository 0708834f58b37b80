"""The OpenAI-compatible HTTP API on FastAPI: /v1/chat/completions and /v1/completions (plain or streamed as
server-sent events), /v1/models, /health, /metrics, and /v1/feedback on any response. Every error is OpenAI's JSON
error shape with a 4xx status; the engine (serve/engine.py) decodes every request in flight in one batch."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST

from tunesmith.feedback.store import ResponseRecord, UnknownResponse
from tunesmith.serve.api_errors import ApiError, add_error_handlers
from tunesmith.serve.engine import Engine, Event, Handle, QueueFull
from tunesmith.serve.feedback_log import FeedbackLog, FeedbackRequest
from tunesmith.serve.guard import Guard
from tunesmith.serve.keys import KeyStore
from tunesmith.serve.limits import KeyLimits, Limiter, Refused
from tunesmith.serve.metrics import ServeMetrics
from tunesmith.serve.prompts import chat_prompt_ids, text_ids
from tunesmith.serve.sampling import Sampling
from tunesmith.serve.schemas import ChatRequest, CompletionRequest


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1_000_000
    max_tokens: int = 1024  # cap on a request's max_tokens, and the default when it names none
    max_n: int = 8


@dataclass(frozen=True)
class ModelEntry:
    """One model id a client can put in `model`: the engine's adapter it runs and what exactly answers."""

    id: str
    engine_adapter: str | None = None  # a PEFT adapter name (or engine.BASE) when the engine serves several
    version: str = ""  # the adapter's or model's content hash, logged with each response
    adapter: str | None = None  # logged with each response: the adapter's name, None for a whole model


@dataclass(frozen=True)
class Served:
    name: str  # the default id clients put in `model` (the first of `models`)
    engine: Engine
    context_window: int
    created: int
    version: str = ""
    adapter: str | None = None
    others: tuple[ModelEntry, ...] = ()  # further ids on the same engine (several adapters on one base)
    engine_adapter: str | None = None  # the default id's adapter when the engine serves several

    @property
    def models(self) -> dict[str, ModelEntry]:
        first = ModelEntry(self.name, self.engine_adapter, self.version, self.adapter)
        return {entry.id: entry for entry in (first, *self.others)}


def create_app(
    served: Served,
    keys: KeyStore | None,
    limits: Limits = Limits(),
    key_limits: KeyLimits | None = None,
    feedback: FeedbackLog | None = None,
) -> FastAPI:
    app = FastAPI(title="tunesmith", version="1", docs_url=None, redoc_url=None)
    stats = served.engine.stats
    metrics = ServeMetrics(lambda: stats().waiting, lambda: stats().active)
    api = _Api(served, limits, Limiter(key_limits or KeyLimits()), metrics, feedback)
    app.add_middleware(Guard, keys=keys, max_body_bytes=limits.max_body_bytes, metrics=metrics)
    add_error_handlers(app)

    @app.get("/health")
    async def health() -> dict:
        now = stats()
        return {"status": "ok", "model": served.name, "models": list(served.models), "active": now.active,
                "waiting": now.waiting}  # fmt: skip

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> dict:
        owner = {"object": "model", "created": served.created, "owned_by": "tunesmith"}
        return {"object": "list", "data": [{"id": name, **owner} for name in served.models]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request, body: ChatRequest):
        entry = _served_model(body.model, served)
        roles = {"developer": "system"}  # OpenAI's newer name for the system turn
        messages = [{"role": roles.get(m.role, m.role), "content": m.content} for m in body.messages]
        prompt = chat_prompt_ids(served.engine.tokenizer, messages)
        return await api.complete(_key(request), body, [prompt], chat=True, sources=[messages], entry=entry)

    @app.post("/v1/completions")
    async def completions(request: Request, body: CompletionRequest):
        entry = _served_model(body.model, served)
        prompts = [text_ids(served.engine.tokenizer, p) for p in body.prompts()]
        if any(not p for p in prompts):
            raise ApiError(400, "prompt must not be empty", "invalid_request_error", param="prompt")
        return await api.complete(_key(request), body, prompts, chat=False, sources=body.prompts(), entry=entry)

    @app.post("/v1/feedback")
    async def add_feedback(request: Request, body: FeedbackRequest) -> dict:
        """A rating (1 or -1), a corrected answer and/or a comment on one choice of a served response; answered
        once the row is committed."""
        if feedback is None:
            raise ApiError(404, "feedback is off on this server (started with --no-feedback)", "invalid_request_error")
        try:
            number = await feedback.add(body, _key(request))
        except UnknownResponse as exc:
            raise ApiError(404, str(exc), "invalid_request_error", "response_not_found", "response_id") from None
        return {"object": "feedback", "id": number, "response_id": body.response_id, "choice": body.choice}

    return app


def _key(request: Request) -> str:
    return getattr(request.state, "key", None) or "local"


def _served_model(name: str, served: Served) -> ModelEntry:
    entry = served.models.get(name)
    if entry is None:
        listed = ", ".join(repr(m) for m in served.models)
        message = f"model {name!r} is not served here; GET /v1/models lists {listed}"
        raise ApiError(404, message, "invalid_request_error", "model_not_found", "model")
    return entry


def _sampling(served: Served, body: ChatRequest | CompletionRequest, prompt_len: int, limits: Limits) -> Sampling:
    if body.n > limits.max_n:
        raise ApiError(400, f"n is at most {limits.max_n} here", "invalid_request_error", param="n")
    requested = body.token_budget()
    if requested is not None and requested > limits.max_tokens:
        message = f"max_tokens is at most {limits.max_tokens} here (asked {requested})"
        raise ApiError(400, message, "invalid_request_error", param="max_tokens")
    room = served.context_window - prompt_len
    budget = min(requested or limits.max_tokens, room)
    if room < 1 or (requested is not None and requested > room):
        message = (
            f"this model's context window is {served.context_window} tokens; the prompt has {prompt_len} and "
            f"{requested or 1} more were asked for"
        )
        raise ApiError(400, message, "invalid_request_error", "context_length_exceeded", "messages")
    try:
        stop = body.stop_strings()
        return Sampling(budget, body.temperature, body.top_p, stop, body.seed)
    except ValueError as exc:
        raise ApiError(400, str(exc), "invalid_request_error", param="stop") from None


@dataclass
class _Api:
    served: Served
    limits: Limits
    limiter: Limiter
    metrics: ServeMetrics
    feedback: FeedbackLog | None = None

    async def complete(
        self, key: str, body, prompts: list[list[int]], chat: bool, sources: list[Any], entry: ModelEntry
    ):
        """Admit (per-key limits), submit every choice to `entry`'s model, then answer whole or as a stream.
        `sources` are the prompts as the client sent them, logged with the answers for feedback."""
        samplings = [_sampling(self.served, body, len(p), self.limits) for p in prompts]
        reserved = body.n * sum(len(p) + s.max_tokens for p, s in zip(prompts, samplings, strict=True))
        try:
            self.limiter.admit(key, reserved)
        except Refused as exc:
            error = ApiError(429, str(exc), "rate_limit_exceeded", "rate_limit_exceeded")
            return error.response({"Retry-After": str(exc.retry_after)})
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()
        handles: list[Handle] = []
        try:
            for p, (prompt, sampling) in enumerate(zip(prompts, samplings, strict=True)):
                for i in range(body.n):
                    seeded = sampling if sampling.seed is None else _with_seed(sampling, sampling.seed + i)
                    sink = _sink(loop, queue, p * body.n + i)
                    handles.append(self.served.engine.submit(prompt, seeded, sink, entry.engine_adapter))
        except QueueFull:
            for handle in handles:
                handle.cancel()
            self.limiter.release(key, reserved)
            error = ApiError(429, "the server is at capacity; retry shortly", "rate_limit_exceeded", "queue_full")
            return error.response({"Retry-After": "1"})
        # usage counts each prompt once, however many choices it has (as OpenAI's API does)
        reply = _Reply(entry.id, chat, handles, sum(len(p) for p in prompts))
        reply.on_end = lambda: self._ended(key, reserved, reply)
        if self.feedback is not None:
            reply.on_done = lambda: self._log(reply, key, body.n, sources, prompts, samplings[0], entry)
        if body.stream:
            usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(_stream(reply, queue, usage, self.metrics), media_type="text/event-stream")
        try:
            await _collect(reply, queue)
        finally:
            reply.end()
        return reply.body()

    def _log(
        self, reply: _Reply, key: str, n: int, sources: list[Any], prompts: list[list[int]], sampling, entry: ModelEntry
    ) -> None:
        if self.feedback is None or "error" in reply.reasons:
            return
        tokenizer = self.served.engine.tokenizer
        record = ResponseRecord(
            id=reply.id,
            kind="chat" if reply.chat else "completion",
            model=entry.id,
            model_version=entry.version,
            adapter=entry.adapter,
            key_name=key,
            prompts=sources,
            rendered=[tokenizer.decode(ids, skip_special_tokens=False) for ids in prompts],
            sampling=asdict(sampling) | {"seeds": "seed + choice index" if sampling.seed is not None else None},
            n=n,
            answers=list(reply.texts),
            finish_reasons=list(reply.reasons),
        )
        self.feedback.record(record)

    def _ended(self, key: str, reserved: int, reply: _Reply) -> None:
        self.limiter.release(key, reserved - reply.prompt_tokens - reply.completion_tokens)
        self.metrics.prompt_tokens.inc(reply.prompt_tokens)
        self.metrics.completion_tokens.inc(reply.completion_tokens)
        route = "/v1/chat/completions" if reply.chat else "/v1/completions"
        self.metrics.latency.labels(route).observe(time.perf_counter() - reply.started)


def _with_seed(sampling: Sampling, seed: int) -> Sampling:
    return Sampling(sampling.max_tokens, sampling.temperature, sampling.top_p, sampling.stop, seed)


def _sink(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, index: int):
    return lambda event: loop.call_soon_threadsafe(queue.put_nowait, (index, event))


class _Reply:
    """The choices of one response as their events arrive."""

    def __init__(self, model: str, chat: bool, handles: list[Handle], prompt_tokens: int) -> None:
        self.id = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
        self.model, self.chat, self.handles, self.created = model, chat, handles, int(time.time())
        self.texts, self.reasons = [""] * len(handles), [None] * len(handles)
        self.prompt_tokens, self.completion_tokens = prompt_tokens, 0
        self.started, self._ended = time.perf_counter(), False
        self.on_end: Callable[[], None] | None = None  # once, when the response is over for any reason
        self.on_done: Callable[[], None] | None = None  # once, when every choice finished, before the client hears

    def end(self) -> None:
        """Once, when the response is over (finished, failed, or its client gone): unfinished choices are
        cancelled, and the limits and metrics hear of it."""
        if self._ended:
            return
        self._ended = True
        if not self.done:
            self.cancel()
        if self.on_end is not None:
            self.on_end()

    @property
    def done(self) -> bool:
        return all(reason is not None for reason in self.reasons)

    def add(self, index: int, event: Event) -> None:
        self.texts[index] += event.text
        if event.finish_reason is not None:
            self.reasons[index] = event.finish_reason
            self.completion_tokens += event.completion_tokens
            if self.done and self.on_done is not None:
                self.on_done()

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()

    def usage(self) -> dict:
        total = self.prompt_tokens + self.completion_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "total_tokens": total}

    def body(self) -> dict | JSONResponse:
        if "error" in self.reasons:
            return ApiError(500, "generation failed; see the server log", "server_error").response()
        choices = [self._choice(i) for i in range(len(self.handles))]
        kind = "chat.completion" if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": choices,
                "usage": self.usage()}  # fmt: skip

    def _choice(self, i: int) -> dict:
        reason = self.reasons[i]
        if self.chat:
            message = {"role": "assistant", "content": self.texts[i]}
            return {"index": i, "message": message, "finish_reason": reason, "logprobs": None}
        return {"index": i, "text": self.texts[i], "finish_reason": reason, "logprobs": None}

    def chunk(self, index: int | None, text: str | None, reason: str | None, first: bool = False) -> dict:
        if index is None:
            choices = []
        elif self.chat:
            delta = ({"role": "assistant", "content": ""} if first else {}) | ({"content": text} if text else {})
            choices = [{"index": index, "delta": delta, "finish_reason": reason, "logprobs": None}]
        else:
            choices = [{"index": index, "text": text or "", "finish_reason": reason, "logprobs": None}]
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": choices}


async def _collect(reply: _Reply, queue: asyncio.Queue) -> None:
    while not reply.done:
        index, event = await queue.get()
        reply.add(index, event)


async def _stream(
    reply: _Reply, queue: asyncio.Queue, include_usage: bool, metrics: ServeMetrics
) -> AsyncIterator[str]:
    """SSE chunks; with `include_usage` every chunk has `usage: null` and a last chunk (no choices) holds it.
    A client that goes away cancels this generator, and its requests leave the batch at the next step."""
    extra = {"usage": None} if include_usage else {}
    try:
        if reply.chat:
            for i in range(len(reply.handles)):
                yield _sse(reply.chunk(i, None, None, first=True) | extra)
        first = True
        while not reply.done:
            index, event = await queue.get()
            reply.add(index, event)
            if event.text and first:
                metrics.first_token.observe(time.perf_counter() - reply.started)
                first = False
            if event.text or event.finish_reason:
                reason = "stop" if event.finish_reason == "cancelled" else event.finish_reason
                yield _sse(reply.chunk(index, event.text, reason) | extra)
        if include_usage:
            yield _sse(reply.chunk(None, None, None) | {"usage": reply.usage()})
        yield "data: [DONE]\n\n"
    finally:
        reply.end()


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"
