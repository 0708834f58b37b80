"""The ASGI middleware in front of every route: the API key (all routes but /health), the request body bound
(by Content-Length, and by counting the bytes of a chunked upload as they arrive), and the request counter."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunesmith.serve.api_errors import ApiError
from tunesmith.serve.keys import KeyStore
from tunesmith.serve.metrics import ServeMetrics

ROUTES = {"/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions"}


class Guard:
    def __init__(self, app: ASGIApp, keys: KeyStore | None, max_body_bytes: int, metrics: ServeMetrics) -> None:
        self.app, self.keys, self.max_body_bytes, self.metrics = app, keys, max_body_bytes, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal.response(refusal.headers)(scope, receive, counted_send)
                return
            await self.app(scope, self._bounded(receive), counted_send)
        finally:
            route = scope["path"] if scope["path"] in ROUTES else "other"
            self.metrics.requests.labels(route, str(status["code"])).inc()

    def _refusal(self, scope: Scope) -> ApiError | None:
        headers = Headers(scope=scope)
        if self.keys is not None and scope["path"] != "/health":
            header = headers.get("authorization", "")
            name = self.keys.check(header[7:].strip() if header.lower().startswith("bearer ") else None)
            if name is None:
                message = "a valid API key is required (Authorization: Bearer <key>)"
                error = ApiError(401, message, "invalid_request_error", "invalid_api_key")
                error.headers = {"WWW-Authenticate": "Bearer"}
                return error
            scope.setdefault("state", {})["key"] = name
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return self._too_large()
        return None

    def _bounded(self, receive: Receive) -> Receive:
        """`receive` that counts body bytes; past the bound it raises, and the error handler answers 413."""
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:  # FastAPI passes an HTTPException through body parsing
                    raise HTTPException(413, self._too_large().message)
            return message

        return bounded

    def _too_large(self) -> ApiError:
        return ApiError(
            413, f"request body over {self.max_body_bytes} bytes", "invalid_request_error", "body_too_large"
        )
