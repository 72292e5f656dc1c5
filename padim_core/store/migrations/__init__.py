"""Alembic migrations of the workspace store, run by ``padim_core.store.database``."""
