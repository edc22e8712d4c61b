"""Alembic migrations of the warehouse schema (``patron_privacy.warehouse``)."""
