"""Database URLs as users type them: a bare `postgresql://` means the psycopg 3 driver, a plain path means a
SQLite file, and a URL shown in a message never shows its password."""

from __future__ import annotations

from pathlib import Path


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
