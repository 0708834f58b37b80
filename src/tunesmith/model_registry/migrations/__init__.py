"""Alembic migrations of the model registry (run by `databases.upgrade`, never by hand)."""
