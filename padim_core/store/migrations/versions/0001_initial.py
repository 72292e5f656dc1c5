"""Model library (models, versions) and inspection history (inspections, thumbnails).

Revision ID: 0001
Revises:
Create Date: 2026-12-01
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
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("default_version", sa.Integer(), nullable=True),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", name="uq_models_name"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("backbone", sa.String(64), nullable=False),
        sa.Column("d", sa.Integer(), nullable=False),
        sa.Column("image_size", sa.Integer(), nullable=False),
        sa.Column("crop", sa.Integer(), nullable=False),
        sa.Column("n_train_images", sa.Integer(), nullable=False),
        sa.Column("training_fingerprint", sa.String(64), nullable=False),
        sa.Column("fit_seconds", sa.Float(), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("image_threshold", sa.Float(), nullable=False),
        sa.Column("pixel_threshold", sa.Float(), nullable=False),
        sa.Column("operating_image_threshold", sa.Float(), nullable=True),
        sa.Column("operating_pixel_threshold", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("card_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], ondelete="CASCADE",
                                name="fk_model_versions_model_id_models"),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_number"),
    )
    op.create_index("ix_model_versions_model_id", "model_versions", ["model_id"])
    op.create_index("ix_model_versions_sha256", "model_versions", ["sha256"])
    op.create_table(
        "inspections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspected_at", sa.DateTime(), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("normalized_score", sa.Float(), nullable=True),
        sa.Column("image_threshold", sa.Float(), nullable=False),
        sa.Column("pixel_threshold", sa.Float(), nullable=False),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("operator", sa.String(200), nullable=False),
        sa.Column("decision", sa.String(32), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["version_id"], ["model_versions.id"], ondelete="SET NULL",
                                name="fk_inspections_version_id_model_versions"),
        sa.PrimaryKeyConstraint("id", name="pk_inspections"),
    )
    op.create_index("ix_inspections_inspected_at", "inspections", ["inspected_at"])
    op.create_index("ix_inspections_version_id", "inspections", ["version_id"])
    op.create_index("ix_inspections_verdict", "inspections", ["verdict"])
    op.create_index("ix_inspections_decision", "inspections", ["decision"])
    op.create_index("ix_inspections_model", "inspections", ["model_name", "model_version"])
    op.create_table(
        "thumbnails",
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.Column("image_jpeg", sa.LargeBinary(), nullable=True),
        sa.Column("overlay_jpeg", sa.LargeBinary(), nullable=True),
        sa.Column("n_bytes", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["inspection_id"], ["inspections.id"], ondelete="CASCADE",
                                name="fk_thumbnails_inspection_id_inspections"),
        sa.PrimaryKeyConstraint("inspection_id", name="pk_thumbnails"),
    )


def downgrade() -> None:
    op.drop_table("thumbnails")
    op.drop_table("inspections")
    op.drop_table("model_versions")
    op.drop_table("models")
