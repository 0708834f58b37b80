"""The registry's tables. The migration in `migrations/versions/` creates the same ones; a test checks they agree.

`versions.stage` is `candidate`, `champion` or `archived`. At most one champion per name is a rule of the
database (a partial unique index, on SQLite and PostgreSQL alike), not only of the code: two promotes racing
each other cannot both commit.
"""

from __future__ import annotations

import sqlalchemy as sa

STAGES = ("candidate", "champion", "archived")
metadata = sa.MetaData()

names = sa.Table(
    "registry_names",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
)

versions = sa.Table(
    "registry_versions",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), sa.ForeignKey("registry_names.name"), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("parent_version", sa.Integer(), nullable=True),
    sa.Column("run", sa.Text(), nullable=False),  # the run folder it was registered from
    sa.Column("base_model", sa.String(255), nullable=False),
    sa.Column("method", sa.String(64), nullable=False),
    sa.Column("task", sa.String(64), nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False),
    sa.Column("weights_hash", sa.String(64), nullable=False),  # the content address in the store
    sa.Column("lineage", sa.JSON(), nullable=False),  # config, data files, data check, metrics, libraries, git
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("name", "version", name="registry_one_number_per_version"),
    sa.CheckConstraint(f"stage IN {STAGES}", name="registry_known_stage"),
)

sa.Index(
    "registry_one_champion",
    versions.c.name,
    unique=True,
    sqlite_where=versions.c.stage == "champion",
    postgresql_where=versions.c.stage == "champion",
)

events = sa.Table(
    "registry_events",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, index=True),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # add | promote | rollback | archive
    sa.Column("previous_champion", sa.Integer(), nullable=True),
    sa.Column("note", sa.Text(), nullable=True),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
)
