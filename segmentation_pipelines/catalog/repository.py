"""A repository over one resource table, scoped to one (org, sandbox): no query can reach another sandbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
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

    def scoped(self) -> Select:
        m = self.model
        return select(m).where(m.org_id == self.org_id, m.sandbox == self.sandbox)

    def get(self, ident: Any) -> M | None:
        row = self.session.get(self.model, ident)
        if row is None or row.org_id != self.org_id or row.sandbox != self.sandbox:
            return None
        return row

    def add(self, **columns: Any) -> M:
        now = now_ms()
        columns.setdefault("created_ms", now)
        columns.setdefault("updated_ms", now)
        if "id" not in columns and self.model.id.type.python_type is str:
            columns["id"] = new_id()
        row = self.model(org_id=self.org_id, sandbox=self.sandbox, **columns)
        self.session.add(row)
        self.session.flush()
        return row

    def update(self, row: M, **columns: Any) -> M:
        for key, value in columns.items():
            setattr(row, key, value)
        row.updated_ms = now_ms()
        self.session.flush()
        return row

    def delete(self, row: M) -> None:
        self.session.delete(row)
        self.session.flush()

    def find(self, *where: Any, order_by: Sequence[Any] = (), offset: int = 0, limit: int | None = None) -> list[M]:
        query = self.scoped().where(*where).order_by(*order_by).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        return list(self.session.scalars(query))

    def count(self, *where: Any) -> int:
        m = self.model
        query = select(func.count()).select_from(m).where(m.org_id == self.org_id, m.sandbox == self.sandbox, *where)
        return int(self.session.scalar(query) or 0)
