"""`/good`, `/bad` and `/fix` in a terminal chat with a model in this process: the rated exchange and its feedback
go to a feedback database (the tables `tunesmith serve` writes, so one `feedback export` reads both), opened at
the first feedback; a chat that rates nothing writes nothing."""

from __future__ import annotations

import secrets
from dataclasses import asdict

from transformers import PreTrainedTokenizerBase

from tunesmith.data.tokenize import render
from tunesmith.databases import masked
from tunesmith.evaluate.generate import Decoding
from tunesmith.feedback.store import FeedbackRecord, FeedbackStore, ResponseRecord


class LocalFeedback:
    def __init__(
        self, db: str, model: str, version: str, tokenizer: PreTrainedTokenizerBase, decoding: Decoding
    ) -> None:
        self.db, self.model, self.version, self.tokenizer, self.decoding = db, model, version, tokenizer, decoding
        self._store: FeedbackStore | None = None
        self._last: tuple[list[dict[str, str]], str] | None = None
        self._logged: str | None = None  # id of the last exchange once it is in the database

    def note(self, messages: list[dict[str, str]], answer: str) -> None:
        self._last, self._logged = (messages, answer), None

    def send(self, rating: int | None, correction: str | None) -> str:
        if self._last is None:
            return "there is no answer to rate yet"
        store = self._store = self._store or FeedbackStore(self.db)
        if self._logged is None:
            self._logged = self._log(store, *self._last)
        number = store.add_feedback(FeedbackRecord(self._logged, 0, rating, correction, None, "local"))
        return f"feedback #{number} stored in {masked(store.url).removeprefix('sqlite:///')}"

    def _log(self, store: FeedbackStore, messages: list[dict[str, str]], answer: str) -> str:
        record = ResponseRecord(
            id="chatcmpl-" + secrets.token_hex(12),
            kind="chat",
            model=self.model,
            model_version=self.version,
            adapter=None,
            key_name="local",
            prompts=[messages],
            rendered=[render(self.tokenizer, messages, generation_prompt=True)],
            sampling=asdict(self.decoding),
            n=1,
            answers=[answer],
            finish_reasons=[None],
        )
        store.record_response(record)
        return record.id
