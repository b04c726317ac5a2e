"""Segment definition names unique per sandbox regardless of case, in the database (SQLite and PostgreSQL).

The service's pre-insert check compares ``lower(name)``; the unique constraint it backed compared ``name`` as
written, so concurrent case variants ("VIP", "vip") could all commit. A unique index on
``(org_id, sandbox, lower(name))`` replaces it. Existing case variants (possible before this revision) are renamed
``<name> (2)``, ``<name> (3)``, ... oldest first, so the index can be built.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_segment_definition_name_ci"


def _rename_case_variants() -> None:
    if context.is_offline_mode():  # `alembic upgrade --sql`: no rows to read; run it online on such data
        return
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, org_id, sandbox, name, body FROM segment_definitions ORDER BY created_ms, id")
    ).fetchall()
    taken: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        names = taken.setdefault((row.org_id, row.sandbox), set())
        name, k = row.name, 2
        while name.lower() in names:
            name, k = f"{row.name} ({k})", k + 1
        names.add(name.lower())
        if name != row.name:
            body = row.body if isinstance(row.body, dict) else json.loads(row.body)
            conn.execute(
                sa.text("UPDATE segment_definitions SET name = :name, body = :body WHERE id = :id"),
                {"name": name, "body": json.dumps({**body, "name": name}), "id": row.id},
            )


def upgrade() -> None:
    _rename_case_variants()
    with op.batch_alter_table("segment_definitions") as batch:
        batch.drop_constraint("uq_segment_definition_name", type_="unique")
    op.create_index(INDEX, "segment_definitions", ["org_id", "sandbox", sa.text("lower(name)")], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="segment_definitions")
    with op.batch_alter_table("segment_definitions") as batch:
        batch.create_unique_constraint("uq_segment_definition_name", ["org_id", "sandbox", "name"])
