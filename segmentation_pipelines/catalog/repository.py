"""A repository over one resource table, scoped to one (org, sandbox): no query can reach another sandbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, inspect, select
from sqlalchemy.orm import Session

from segmentation_pipelines.catalog.db import now_ms

M = TypeVar("M")


def new_id() -> str:
    return str(uuid.uuid4())


class Repository(Generic[M]):
    def __init__(self, session: Session, model: type[M], org_id: str, sandbox: str):
        self.session = session
        self.model = model
        self.org_id = org_id
        self.sandbox = sandbox
        # The primary key column (``id`` on resources, ``pk`` on audience_evaluations).
        self._pk = inspect(model).primary_key[0]

    def scoped(self) -> Select:
        m = self.model
        return select(m).where(m.org_id == self.org_id, m.sandbox == self.sandbox)

    def get(self, ident: Any, for_update: bool = False) -> M | None:
        """The row with this primary key in this sandbox, or None.

        ``for_update=True`` locks the row until the transaction ends (``SELECT ... FOR UPDATE`` on PostgreSQL; on
        SQLite the write transaction already holds the database lock), so a read-modify-write cannot lose an update
        made by another process at the same time; it also re-reads the row even if the session has it already.
        """
        if for_update:
            # populate_existing: the identity map may hold an older copy of the row; overwrite it.
            query = self.scoped().where(self._pk == ident).with_for_update()
            return self.session.scalars(query.execution_options(populate_existing=True)).first()
        row = self.session.get(self.model, ident)
        if row is None or row.org_id != self.org_id or row.sandbox != self.sandbox:
            return None
        return row

    def add(self, **columns: Any) -> M:
        now = now_ms()
        if "created_ms" in self.model.__table__.c:
            columns.setdefault("created_ms", now)
        if "updated_ms" in self.model.__table__.c:
            columns.setdefault("updated_ms", now)
        if self._pk.key not in columns and self._pk.type.python_type is str:
            columns[self._pk.key] = new_id()
        row = self.model(org_id=self.org_id, sandbox=self.sandbox, **columns)
        self.session.add(row)
        self.session.flush()
        return row

    def update(self, row: M, **columns: Any) -> M:
        for key, value in columns.items():
            setattr(row, key, value)
        if hasattr(row, "updated_ms"):
            row.updated_ms = now_ms()
        self.session.flush()
        return row

    def delete(self, row: M) -> None:
        self.session.delete(row)
        self.session.flush()

    def find(
        self, *where: Any, order_by: Sequence[Any] = (), offset: int = 0, limit: int | None = None
    ) -> list[M]:
        """Rows of this sandbox matching ``where``, in ``order_by`` order then by primary key.

        The primary key breaks ties, so pages (``offset``/``limit``) neither repeat nor skip rows that sort equal.
        """
        query = self.scoped().where(*where).order_by(*order_by, self._pk).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        return list(self.session.scalars(query))

    def count(self, *where: Any) -> int:
        m = self.model
        query = (
            select(func.count())
            .select_from(m)
            .where(m.org_id == self.org_id, m.sandbox == self.sandbox, *where)
        )
        return int(self.session.scalar(query) or 0)
