"""The feedback database: every served response (the exact prompt, the rendered template, the sampling settings,
the model and its version, the answers) and what people said about it (a rating, a corrected answer, a comment).

SQLite by default, PostgreSQL (or any SQLAlchemy URL) by URL; the schema is created and upgraded by Alembic
migrations (`migrations/`), so a database written by an older tunesmith is brought up to date when it is opened.
`add_feedback` returns only after its row is committed: a feedback the caller was told about survives a kill -9.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tunesmith.databases import database_url, engine_for, upgrade

MIGRATIONS = Path(__file__).parent / "migrations"
metadata = sa.MetaData()

responses = sa.Table(
    "responses",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # chat | completion
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("model_version", sa.String(255), nullable=False),
    sa.Column("adapter", sa.String(255), nullable=True),
    sa.Column("key_name", sa.String(255), nullable=False),
    sa.Column("prompts", sa.JSON(), nullable=False),  # per prompt: chat messages, or the prompt text
    sa.Column("rendered", sa.JSON(), nullable=False),  # per prompt: the exact text the model saw
    sa.Column("sampling", sa.JSON(), nullable=False),
    sa.Column("n", sa.Integer(), nullable=False),  # choices per prompt: choice c answers prompt c // n
    sa.Column("answers", sa.JSON(), nullable=False),
    sa.Column("finish_reasons", sa.JSON(), nullable=False),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("response_id", sa.String(64), sa.ForeignKey("responses.id"), nullable=False, index=True),
    sa.Column("choice", sa.Integer(), nullable=False),
    sa.Column("rating", sa.Integer(), nullable=True),  # +1 or -1
    sa.Column("correction", sa.Text(), nullable=True),
    sa.Column("comment", sa.Text(), nullable=True),
    sa.Column("key_name", sa.String(255), nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class ResponseRecord:
    id: str
    kind: str
    model: str
    model_version: str
    adapter: str | None
    key_name: str
    prompts: list[Any]
    rendered: list[str]
    sampling: dict[str, Any]
    n: int
    answers: list[str]
    finish_reasons: list[str | None]

    def prompt_of(self, choice: int) -> Any:
        return self.prompts[choice // self.n]


@dataclass(frozen=True)
class FeedbackRecord:
    response_id: str
    choice: int = 0
    rating: int | None = None
    correction: str | None = None
    comment: str | None = None
    key_name: str = "local"


class UnknownResponse(LookupError):
    """No response with this id (or with this choice) was recorded for this key."""


class FeedbackStore:
    """One database. Thread-safe: every call takes its own connection from the engine's pool."""

    def __init__(self, url: str) -> None:
        self.url = database_url(url)
        self.engine = engine_for(self.url)
        upgrade(self.engine, self.url, MIGRATIONS, "feedback database")

    def record_response(self, record: ResponseRecord) -> None:
        with self.engine.begin() as db:
            db.execute(responses.insert().values(**asdict(record), created=_now()))

    def add_feedback(self, record: FeedbackRecord) -> int:
        """Store one feedback row (committed when this returns) and return its id; the response must exist,
        have the choice, and belong to the same key."""
        with self.engine.begin() as db:
            row = db.execute(
                sa.select(responses.c.n, responses.c.answers, responses.c.key_name).where(
                    responses.c.id == record.response_id
                )
            ).first()
            if row is None or row.key_name != record.key_name:
                raise UnknownResponse(f"no response {record.response_id!r} was served to this key")
            if not 0 <= record.choice < len(row.answers):
                raise UnknownResponse(f"response {record.response_id!r} has {len(row.answers)} choice(s)")
            result = db.execute(feedback.insert().values(**asdict(record), created=_now()))
            return int(result.inserted_primary_key[0])

    def response(self, response_id: str) -> ResponseRecord | None:
        with self.engine.connect() as db:
            row = db.execute(sa.select(responses).where(responses.c.id == response_id)).first()
        return None if row is None else _response(row)

    def rated(self) -> Iterator[tuple[ResponseRecord, FeedbackRecord]]:
        """Every feedback row with its response, oldest first."""
        query = sa.select(feedback, responses).join(responses, feedback.c.response_id == responses.c.id)
        with self.engine.connect() as db:
            for row in db.execute(query.order_by(feedback.c.id)).mappings():
                fields = {c.name: row[feedback.c[c.name]] for c in feedback.columns if c.name not in ("id", "created")}
                answer = _response({c.name: row[responses.c[c.name]] for c in responses.columns})
                yield answer, FeedbackRecord(**fields)

    def close(self) -> None:
        self.engine.dispose()


def _response(row: Any) -> ResponseRecord:
    mapping = row._mapping if hasattr(row, "_mapping") else row
    return ResponseRecord(**{k: v for k, v in mapping.items() if k != "created"})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
