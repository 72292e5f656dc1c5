"""Which rows one inspection run recorded (one click, one camera session, one predict run).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.add_column(sa.Column("batch", sa.String(32), nullable=False, server_default=""))
    op.create_index("ix_inspections_batch", "inspections", ["batch"])


def downgrade() -> None:
    op.drop_index("ix_inspections_batch", table_name="inspections")
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("batch")
