"""What people say about served answers: the response log and the feedback on it (store.py), kept in a database
under Alembic migrations, and its export as training rows (export.py)."""
