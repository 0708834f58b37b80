"""Alembic migrations of the feedback database (run by `store.upgrade`, never by hand)."""
