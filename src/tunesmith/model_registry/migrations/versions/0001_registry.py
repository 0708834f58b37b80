"""names, versions (one champion per name), events

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_names",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "registry_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), sa.ForeignKey("registry_names.name"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("parent_version", sa.Integer(), nullable=True),
        sa.Column("run", sa.Text(), nullable=False),
        sa.Column("base_model", sa.String(255), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("weights_hash", sa.String(64), nullable=False),
        sa.Column("lineage", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("name", "version", name="registry_one_number_per_version"),
        sa.CheckConstraint("stage IN ('candidate', 'champion', 'archived')", name="registry_known_stage"),
    )
    op.create_index(
        "registry_one_champion",
        "registry_versions",
        ["name"],
        unique=True,
        sqlite_where=sa.text("stage = 'champion'"),
        postgresql_where=sa.text("stage = 'champion'"),
    )
    op.create_table(
        "registry_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("previous_champion", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_registry_events_name", "registry_events", ["name"])


def downgrade() -> None:
    op.drop_table("registry_events")
    op.drop_table("registry_versions")
    op.drop_table("registry_names")
