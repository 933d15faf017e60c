"""Alembic migrations for tfa-middleware's tables; run them with ``tfa-middleware db upgrade``."""
