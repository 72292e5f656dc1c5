"""Alembic environment: runs on the connection the store hands over (never an ini file)."""

from __future__ import annotations

from alembic import context

from padim_core.store.tables import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite",
                  transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
