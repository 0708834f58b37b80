"""Database URLs as users type them: a bare `postgresql://` means the psycopg 3 driver, a plain path means a
SQLite file, and a URL shown in a message never shows its password. Also the engine settings and the Alembic
upgrade every tunesmith database (feedback, model registry) shares."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tunesmith.errors import UserError


def with_driver(url: str) -> str:
    """A bare postgresql:// URL names the psycopg 3 driver (SQLAlchemy's default, psycopg2, is not installed)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def database_url(value: str) -> str:
    """A SQLAlchemy URL from a URL or a file path (a path is a SQLite database, made absolute)."""
    if "://" in value:
        return with_driver(value)
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def masked(url: str) -> str:
    """The URL without its password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        rest = f"{user}:***@{rest.split('@', 1)[1]}"
    return scheme + sep + rest


def engine_for(url: str) -> sa.Engine:
    """An engine for a SQLAlchemy URL; SQLite files get their folder, a 60 s lock wait and `_sqlite_pragmas`."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL: readers never block a writer; synchronous FULL: a commit is on disk; foreign keys enforced."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def run_migrations(context: Any) -> None:
    """The body of every tunesmith Alembic env.py: migrate the connection `upgrade` hands over (no alembic.ini,
    no URL), recording the revision in the schema's own version table."""
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        render_as_batch=connection.dialect.name == "sqlite",
        version_table=context.config.attributes.get("version_table", "alembic_version"),
    )
    with context.begin_transaction():
        context.run_migrations()


def upgrade(engine: sa.Engine, url: str, migrations: Path, what: str, version_table: str = "alembic_version") -> None:
    """Create or migrate a schema to its newest revision with the Alembic scripts in `migrations`; `version_table`
    keeps several tunesmith schemas apart in one database. A database that cannot be opened is a UserError."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            config.attributes["version_table"] = version_table
            command.upgrade(config, "head")
    except sa.exc.SQLAlchemyError as exc:
        reason = str(exc.orig if getattr(exc, "orig", None) else exc).splitlines()[0]
        raise UserError(f"cannot open the {what} {masked(url)}: {reason}") from None


def postgres_missing() -> str | None:
    """Why a throwaway PostgreSQL server cannot start here, or None when it can."""
    missing = [tool for tool in ("initdb", "pg_ctl") if shutil.which(tool) is None]
    if missing:
        return f"PostgreSQL server binaries not found ({', '.join(missing)}): install postgresql to run this"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: cannot start postgres as another user"
    return None


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """postgres refuses to run as root: as root, run the server tools as the `postgres` system user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def local_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server in a temp folder (initdb + pg_ctl on a free local port), for tests and
    benchmarks; yields its URL and stops it and deletes the folder afterwards. Check `postgres_missing()` first."""
    folder = Path(tempfile.mkdtemp(prefix="tunesmith-pg-"))
    folder.chmod(0o777)
    data = folder / "data"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run: dict[str, Any] = dict(check=True, capture_output=True, text=True, timeout=120)
    subprocess.run(_as_postgres_user(["initdb", "-D", str(data), "-A", "trust", "-U", "postgres"]), **run)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    log = folder / "server.log"
    subprocess.run(_as_postgres_user(["pg_ctl", "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]), **run)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        stop = _as_postgres_user(["pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop"])
        subprocess.run(stop, check=False, capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)
