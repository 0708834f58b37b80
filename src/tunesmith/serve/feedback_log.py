"""The server's side of feedback: every finished response is logged (prompt, rendered template, sampling, model
version, answers) and `POST /v1/feedback` stores a rating or a correction for one of them.

All database work runs on one thread of its own, in the order it was asked for: a response is logged before any
feedback on it can arrive (its id reaches the client after the log was queued), the event loop never waits on the
database, and a feedback call is answered only after its row is committed.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tunesmith.feedback.store import FeedbackRecord, FeedbackStore, ResponseRecord
from tunesmith.output import err


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    response_id: str = Field(min_length=1, max_length=64, description="The `id` of a completion")
    choice: int = Field(0, ge=0, description="Which choice of that completion")
    rating: Literal[1, -1] | None = None
    correction: str | None = Field(None, max_length=100_000, description="The answer it should have given")
    comment: str | None = Field(None, max_length=10_000)

    @model_validator(mode="after")
    def _says_something(self) -> FeedbackRequest:
        if self.rating is None and not (self.correction or "").strip() and not (self.comment or "").strip():
            raise ValueError("give a rating (1 or -1), a correction or a comment")
        return self


class FeedbackLog:
    def __init__(self, store: FeedbackStore) -> None:
        self.store = store
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunesmith-feedback")
        self.failed = 0  # responses that could not be logged (said once each on the console)

    def record(self, response: ResponseRecord) -> None:
        self._writer.submit(self.store.record_response, response).add_done_callback(self._logged)

    async def add(self, request: FeedbackRequest, key_name: str) -> int:
        record = FeedbackRecord(
            request.response_id, request.choice, request.rating, request.correction, request.comment, key_name
        )
        return await asyncio.wrap_future(self._writer.submit(self.store.add_feedback, record))

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self.store.close()

    def _logged(self, done: Future) -> None:
        if done.exception() is not None:
            self.failed += 1
            err.print(f"[yellow]could not log a response for feedback:[/] {done.exception()}")
