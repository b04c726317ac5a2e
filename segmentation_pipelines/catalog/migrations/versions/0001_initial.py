"""Initial catalog: one table per API resource, every row scoped by IMS org and sandbox.

Written out explicitly (not generated at run time) so that this revision stays what it is when models.py changes;
tests/catalog/test_migrations.py fails when the migrated schema and models.py differ.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _scoped_columns() -> list[sa.Column]:
    """The columns of ``models.Scoped``: identity, scope, times and the AEP document."""
    return [
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=255), nullable=False),
        sa.Column("sandbox", sa.String(length=128), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
    ]


def _create_scoped_table(name: str, *columns: sa.Column | sa.Constraint, indexed: Sequence[str] = ()) -> None:
    """A resource table: the scoped columns, then its own; one-column indexes on org, sandbox and ``indexed``."""
    op.create_table(name, *_scoped_columns(), *columns, sa.PrimaryKeyConstraint("id"))
    _index(name, "org_id", "sandbox", *indexed)


def _index(table: str, *columns: str) -> None:
    for column in columns:
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


def upgrade() -> None:
    _create_scoped_table(
        "datasets",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("xdm_class", sa.String(length=128), nullable=False),
    )
    _create_scoped_table(
        "batches",
        sa.Column("dataset_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("content_hash", sa.String(length=128), nullable=True),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("rejected_count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        indexed=("dataset_id", "content_hash"),
    )
    _create_scoped_table(
        "merge_policies",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
    )
    _create_scoped_table(
        "segment_definitions",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("batch_enabled", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("org_id", "sandbox", "name", name="uq_segment_definition_name"),
    )
    _create_scoped_table(
        "audiences",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("audience_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        indexed=("audience_id",),
    )

    op.create_table(
        "audience_evaluations",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(length=255), nullable=False),
        sa.Column("sandbox", sa.String(length=128), nullable=False),
        sa.Column("audience_id", sa.String(length=64), nullable=False),
        sa.Column("evaluation_ms", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    _index("audience_evaluations", "job_id")
    op.create_index(
        "ix_audience_evaluations_lookup",
        "audience_evaluations",
        ["org_id", "sandbox", "audience_id", "evaluation_ms"],
        unique=False,
    )

    _create_scoped_table(
        "segment_jobs",
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("evaluation_ms", sa.BigInteger(), nullable=True),
        indexed=("status", "run_id"),
    )

    # Export jobs have integer ids in the contract.
    op.create_table(
        "export_jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(length=255), nullable=False),
        sa.Column("sandbox", sa.String(length=128), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    _index("export_jobs", "org_id", "sandbox", "status", "run_id")

    _create_scoped_table(
        "schedules",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("cron", sa.String(length=255), nullable=True),
        sa.Column("dagster_cron", sa.String(length=255), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
    )
    _create_scoped_table(
        "external_audiences",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
    )
    _create_scoped_table(
        "external_audience_operations",
        sa.Column("audience_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        indexed=("audience_id",),
    )
    _create_scoped_table(
        "external_audience_runs",
        sa.Column("audience_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        indexed=("audience_id", "status", "run_id"),
    )
    _create_scoped_table(
        "previews",
        sa.Column("state", sa.String(length=32), nullable=False),
    )


# Dropped children first (batches references datasets); a table's indexes go with it.
_TABLES = (
    "batches",
    "datasets",
    "merge_policies",
    "segment_definitions",
    "audiences",
    "audience_evaluations",
    "segment_jobs",
    "export_jobs",
    "schedules",
    "external_audiences",
    "external_audience_operations",
    "external_audience_runs",
    "previews",
)


def downgrade() -> None:
    for table in _TABLES:
        op.drop_table(table)
