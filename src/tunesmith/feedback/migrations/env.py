"""Alembic's entry point: `databases.run_migrations` migrates the connection `databases.upgrade` hands over."""

from __future__ import annotations

from alembic import context

from tunesmith.databases import run_migrations

run_migrations(context)
