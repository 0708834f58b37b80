"""The model registry: named models, numbered versions with their lineage, and one champion per name.

SQLite by default (`~/.cache/tunesmith/registry.db`), PostgreSQL or any SQLAlchemy URL by `--db`; the schema is
created and upgraded by Alembic (`migrations/`, its own version table, so it can share a database with the
feedback store). Weights live in a content-addressed folder (`weights.py`) beside it.

Promote and rollback each run in one transaction that first locks the name's row (`SELECT ... FOR UPDATE` on
PostgreSQL; SQLite takes its write lock at `BEGIN IMMEDIATE`), so concurrent promotes of one name run one after
the other; and the partial unique index `registry_one_champion` makes a second champion impossible even for a
writer that skips this code.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from tunesmith.databases import database_url, engine_for, masked, upgrade
from tunesmith.errors import UserError
from tunesmith.model_registry import weights
from tunesmith.model_registry.lineage import export_folder, lineage
from tunesmith.model_registry.schema import events, names, versions
from tunesmith.models.cache import cache_dir

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "registry_alembic_version"
RETRIES = 5
T = TypeVar("T")


@dataclass(frozen=True)
class Version:
    name: str
    version: int
    stage: str
    parent_version: int | None
    run: str
    base_model: str
    method: str
    task: str
    config_hash: str
    weights_hash: str
    lineage: dict[str, Any]
    created: dt.datetime

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version}"


def parse_ref(ref: str) -> tuple[str, int | None]:
    """NAME (its champion) or NAME:VERSION."""
    name, sep, version = ref.rpartition(":")
    if not sep:
        return ref, None
    if not version.isdigit() or not name:
        raise UserError(f"{ref!r}: expected NAME or NAME:VERSION with a whole number")
    return name, int(version)


def default_db() -> str:
    return str(cache_dir() / "registry.db")


def default_store(url: str) -> Path:
    """Next to a SQLite file; in the cache folder for a server database (pass --store for a shared folder)."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).parent / "registry-store"
    return cache_dir() / "registry-store"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _writer(engine: sa.Engine) -> sa.Engine:
    """The engine for write transactions. On SQLite they take the write lock at BEGIN (BEGIN IMMEDIATE), so a
    transaction that reads and then writes waits for the lock up front instead of failing half-way; reads stay
    plain (deferred) transactions."""
    if engine.dialect.name != "sqlite":
        return engine

    @sa.event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's BEGIN below, not the driver's

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        immediate = connection.get_execution_options().get("tunesmith_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine.execution_options(tunesmith_write=True)


class Registry:
    """One registry database and its weight store. Thread- and process-safe."""

    def __init__(self, db: str | None = None, store: Path | None = None) -> None:
        self.url = database_url(db or default_db())
        self.engine = engine_for(self.url)
        self.writer = _writer(self.engine)
        upgrade(self.engine, self.url, MIGRATIONS, "model registry", VERSION_TABLE)
        self.store = Path(store) if store else default_store(self.url)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _locked(self, name: str) -> Iterator[sa.Connection]:
        """A transaction holding the lock on `name`'s row (a UserError when the name is unknown)."""
        with self.writer.begin() as db:
            found = db.execute(sa.select(names.c.name).where(names.c.name == name).with_for_update()).first()
            if found is not None:
                yield db
                return
        known = ", ".join(self.names()) or "none yet"
        raise UserError(f"no model named {name!r} in the registry {masked(self.url)} (known: {known})")

    def _retrying(self, action: Callable[[], T]) -> T:
        """Run a write, again after a lost race on a unique constraint (two writers picked one version number)."""
        for attempt in range(RETRIES):
            try:
                return action()
            except sa.exc.IntegrityError:
                if attempt == RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def add(self, run_dir: Path, name: str, parent: int | None = None) -> Version:
        """Register a finished run as the next version of `name` (a candidate), its weights copied to the store."""
        record = lineage(run_dir)
        digest = weights.put(export_folder(run_dir), self.store)

        def insert() -> int:
            with self.writer.begin() as db:
                if db.execute(sa.select(names.c.name).where(names.c.name == name)).first() is None:
                    db.execute(names.insert().values(name=name, created=_now()))
                number = (
                    db.execute(sa.select(sa.func.max(versions.c.version)).where(versions.c.name == name)).scalar() or 0
                ) + 1
                if parent is not None and self._row(db, name, parent) is None:
                    raise UserError(f"parent version {name}:{parent} does not exist")
                db.execute(
                    versions.insert().values(
                        name=name,
                        version=number,
                        stage="candidate",
                        parent_version=parent,
                        run=str(Path(run_dir).resolve()),
                        base_model=str(record["base_model"]),
                        method=str(record["method"]),
                        task=str(record["task"]),
                        config_hash=record["config_hash"],
                        weights_hash=digest,
                        lineage=record,
                        created=_now(),
                    )
                )
                self._event(db, name, number, "add", None, None)
                return number

        return self.get(name, self._retrying(insert))

    @staticmethod
    def _row(db: sa.Connection, name: str, version: int) -> Any:
        query = sa.select(versions).where(versions.c.name == name, versions.c.version == version)
        return db.execute(query).mappings().first()

    @staticmethod
    def _champion_row(db: sa.Connection, name: str) -> Any:
        query = sa.select(versions).where(versions.c.name == name, versions.c.stage == "champion")
        return db.execute(query).mappings().first()

    @staticmethod
    def _champion_version(db: sa.Connection, name: str) -> int | None:
        row = Registry._champion_row(db, name)
        return None if row is None else row["version"]

    @staticmethod
    def _event(db: sa.Connection, name: str, version: int, action: str, previous: int | None, note: str | None) -> None:
        db.execute(
            events.insert().values(
                name=name, version=version, action=action, previous_champion=previous, note=note, created=_now()
            )
        )

    def names(self) -> list[str]:
        with self.engine.connect() as db:
            return [r[0] for r in db.execute(sa.select(names.c.name).order_by(names.c.name))]

    def list(self, name: str | None = None) -> list[Version]:
        query = sa.select(versions).order_by(versions.c.name, versions.c.version)
        if name is not None:
            query = query.where(versions.c.name == name)
        with self.engine.connect() as db:
            return [_version(r) for r in db.execute(query).mappings()]

    def get(self, name: str, version: int | None = None) -> Version:
        """A version, or the champion when `version` is None; a UserError naming what exists otherwise."""
        with self.engine.connect() as db:
            row = self._champion_row(db, name) if version is None else self._row(db, name, version)
        if row is None:
            have = [v.version for v in self.list(name)]
            what = "no champion" if version is None else f"no version {version}"
            raise UserError(f"{name!r} has {what} (versions: {have or 'none'})")
        return _version(row)

    def champion(self, name: str) -> Version | None:
        with self.engine.connect() as db:
            row = self._champion_row(db, name)
        return None if row is None else _version(row)

    def promote(self, name: str, version: int, note: str | None = None) -> Version:
        """Make `version` the champion; the current champion (if another) is archived. One transaction."""
        with self._locked(name) as db:
            if self._row(db, name, version) is None:
                raise UserError(f"{name!r} has no version {version}")
            current = self._champion_version(db, name)
            if current != version:
                self._crown(db, name, version, current)
                self._event(db, name, version, "promote", current, note)
        return self.get(name, version)

    @staticmethod
    def _crown(db: sa.Connection, name: str, version: int, current: int | None) -> None:
        if current is not None:
            db.execute(
                versions.update().where(versions.c.name == name, versions.c.version == current).values(stage="archived")
            )
        db.execute(
            versions.update().where(versions.c.name == name, versions.c.version == version).values(stage="champion")
        )

    def rollback(self, name: str, note: str | None = None) -> Version:
        """The champion before the current one back, in one command; the current one is archived."""
        with self._locked(name) as db:
            current = self._champion_version(db, name)
            if current is None:
                raise UserError(f"{name!r} has no champion to roll back")
            crowned = db.execute(
                sa.select(events.c.previous_champion)
                .where(events.c.name == name, events.c.version == current, events.c.action.in_(("promote", "rollback")))
                .order_by(events.c.id.desc())
            ).first()
            previous = crowned[0] if crowned else None
            if previous is None:
                raise UserError(f"{name}:{current} was the first champion; there is nothing to roll back to")
            self._crown(db, name, previous, current)
            self._event(db, name, previous, "rollback", current, note)
        return self.get(name, previous)

    def history(self, name: str) -> list[dict[str, Any]]:
        query = sa.select(events).where(events.c.name == name).order_by(events.c.id)
        with self.engine.connect() as db:
            return [dict(r) for r in db.execute(query).mappings()]

    def weights(self, name: str, version: int | None = None) -> Path:
        """The stored export folder of a version (the champion by default), verified against its content hash."""
        return weights.verify(self.store, self.get(name, version).weights_hash)


def _version(row: Any) -> Version:
    return Version(**{k: row[k] for k in Version.__dataclass_fields__})
