"""The ``audience_evaluations`` rows: which membership file is the published result of an audience's evaluation.

A membership file is visible only through its row (written after the file is complete), so readers never see a
partial evaluation, and a cancelled or failed run (which writes no row) publishes nothing. Every evaluation stays
readable: the latest one, or the one in effect at a past time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.timeutil import from_ms

Row = models.AudienceEvaluation


@dataclass(frozen=True)
class Evaluation:
    audience_id: str
    evaluation_ms: int
    job_id: str | None
    path: Path
    counts: dict[str, Any]

    @property
    def evaluation_time(self) -> dt.datetime:
        return from_ms(self.evaluation_ms)


def _evaluation(row: Row) -> Evaluation:
    return Evaluation(
        row.audience_id, int(row.evaluation_ms), row.job_id, Path(row.path), dict(row.counts or {})
    )


class AudienceEvaluations:
    """Reads and writes of the publication pointers of one sandbox."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def _scoped(self):
        return select(Row).where(Row.org_id == self.ctx.org_id, Row.sandbox == self.ctx.sandbox)

    def latest(self, audience_id: str, at_or_before_ms: int | None = None, before_ms: int | None = None):
        """The newest evaluation of an audience (optionally at or before / strictly before a time), or None."""
        query = self._scoped().where(Row.audience_id == audience_id)
        if at_or_before_ms is not None:
            query = query.where(Row.evaluation_ms <= at_or_before_ms)
        if before_ms is not None:
            query = query.where(Row.evaluation_ms < before_ms)
        query = query.order_by(Row.evaluation_ms.desc(), Row.pk.desc()).limit(1)
        with self.ctx.catalog.session(readonly=True) as session:
            row = session.scalars(query).first()
            return None if row is None else _evaluation(row)

    def latest_for(
        self, audience_ids: Iterable[str] | None = None, before_ms: int | None = None
    ) -> dict[str, Evaluation]:
        """The newest evaluation of each audience (all of the sandbox when ``audience_ids`` is None)."""
        newest = select(Row.audience_id, func.max(Row.evaluation_ms).label("ms")).where(
            Row.org_id == self.ctx.org_id, Row.sandbox == self.ctx.sandbox
        )
        ids = None if audience_ids is None else list(audience_ids)
        if ids is not None:
            if not ids:
                return {}
            newest = newest.where(Row.audience_id.in_(ids))
        if before_ms is not None:
            newest = newest.where(Row.evaluation_ms < before_ms)
        newest = newest.group_by(Row.audience_id).subquery()
        query = (
            self._scoped()
            .join(newest, (Row.audience_id == newest.c.audience_id) & (Row.evaluation_ms == newest.c.ms))
            .order_by(Row.pk)
        )
        with self.ctx.catalog.session(readonly=True) as session:
            return {r.audience_id: _evaluation(r) for r in session.scalars(query)}

    def history(self, audience_id: str, limit: int = 30) -> list[Evaluation]:
        """The newest ``limit`` evaluations of an audience, oldest first."""
        query = (
            self._scoped()
            .where(Row.audience_id == audience_id)
            .order_by(Row.evaluation_ms.desc(), Row.pk.desc())
            .limit(limit)
        )
        with self.ctx.catalog.session(readonly=True) as session:
            rows = [_evaluation(r) for r in session.scalars(query)]
        return list(reversed(rows))

    def histories(self, audience_ids: Iterable[str], limit: int = 30) -> dict[str, list[Evaluation]]:
        """:meth:`history` of several audiences in one query (an audience without evaluations: an empty list)."""
        ids = list(dict.fromkeys(audience_ids))
        out: dict[str, list[Evaluation]] = {a: [] for a in ids}
        for start in range(0, len(ids), 500):  # bounded IN lists
            rank = (
                func.row_number()
                .over(partition_by=Row.audience_id, order_by=(Row.evaluation_ms.desc(), Row.pk.desc()))
                .label("rank")
            )
            ranked = (
                self._scoped()
                .add_columns(rank)
                .where(Row.audience_id.in_(ids[start : start + 500]))
                .subquery()
            )
            query = (
                select(Row)
                .join(ranked, Row.pk == ranked.c.pk)
                .where(ranked.c.rank <= limit)
                .order_by(Row.evaluation_ms, Row.pk)
            )
            with self.ctx.catalog.session(readonly=True) as session:
                for r in session.scalars(query):
                    out[r.audience_id].append(_evaluation(r))
        return out

    def publish(
        self,
        evaluation_ms: int,
        files: Mapping[str, Path],
        counts: Mapping[str, Mapping[str, Any]],
        job_id: str | None,
    ) -> list[str]:
        """Record one evaluation of several audiences in one transaction, replacing a same-time evaluation; returns
        the files of the replaced rows (no longer published: the caller removes them)."""
        created = now_ms()

        def work(session) -> list[str]:
            ids = list(files)
            replaced: list[str] = []
            if ids:
                same_time = (
                    Row.org_id == self.ctx.org_id,
                    Row.sandbox == self.ctx.sandbox,
                    Row.audience_id.in_(ids),
                    Row.evaluation_ms == evaluation_ms,
                )
                replaced = [p for p in session.scalars(select(Row.path).where(*same_time)) if p]
                session.execute(delete(Row).where(*same_time))
            for audience_id, path in files.items():
                session.add(
                    Row(
                        org_id=self.ctx.org_id,
                        sandbox=self.ctx.sandbox,
                        audience_id=audience_id,
                        evaluation_ms=evaluation_ms,
                        job_id=job_id,
                        path=str(path),
                        counts=dict(counts.get(audience_id, {})),
                        created_ms=created,
                    )
                )
            new_paths = {str(p) for p in files.values()}
            return [p for p in replaced if p not in new_paths]

        return self.ctx.catalog.transact(work)

    def delete_audience(self, session, audience_id: str) -> list[str]:
        """Drop an audience's rows (in the caller's transaction); returns the file paths they pointed at."""
        rows = list(session.scalars(self._scoped().where(Row.audience_id == audience_id)))
        for row in rows:
            session.delete(row)
        return [r.path for r in rows]
