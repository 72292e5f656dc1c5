"""Index inspections by image sha256 ("was this exact image inspected before?").

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_inspections_image_sha256", "inspections", ["image_sha256"])


def downgrade() -> None:
    op.drop_index("ix_inspections_image_sha256", table_name="inspections")
