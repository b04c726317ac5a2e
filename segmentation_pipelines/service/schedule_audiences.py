"""The schedule audience operations (Flexible Batch Schedules): ``/config/schedules/add-audiences``,
``/remove-audiences``, ``/audience-map`` and ``/trigger``.

Which audiences a ``batch_segmentation`` schedule evaluates is its ``properties.segments`` (``["*"]`` = every
batch definition of the sandbox). ``add-audiences``/``remove-audiences`` edit that list under a row lock (all or
nothing); ``audience-map`` answers, for segment definition ids, which batch schedules evaluate them; ``trigger``
evaluates a schedule's audiences now: one segment job (``source: "scheduler"``) per call, tracked like any job.
The Dagster schedule is not touched: a tick re-reads ``properties.segments`` from the catalog.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from segmentation_pipelines.catalog import models
from segmentation_pipelines.errors import BadRequest
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.segment_jobs import SegmentJobsService
from segmentation_pipelines.service.segment_selection import batch_evaluated

ALL = "*"
TRIGGER = "trigger"  # properties.trigger of a job a trigger created (a tick's job has none)


def frequency(dagster_cron: str | None) -> str:
    """The FBS read-only ``frequency`` of a converted 5-field cron: daily, weekly, monthly, yearly or custom."""
    fields = (dagster_cron or "").split()
    if len(fields) != 5:
        return "custom"
    _minute, _hour, day_of_month, month, day_of_week = fields
    if month != "*":
        return "yearly" if day_of_month != "*" and day_of_week == "*" else "custom"
    if day_of_month == "*" and day_of_week == "*":
        return "daily"
    if day_of_month == "*":
        return "weekly" if "," not in day_of_week and "-" not in day_of_week else "custom"
    if day_of_week == "*":
        return "monthly" if "," not in day_of_month and "-" not in day_of_month else "custom"
    return "custom"


def _ids(body: Mapping[str, Any], field: str = "segments") -> list[str]:
    items = body.get(field)
    if not isinstance(items, list) or not items:
        raise BadRequest(f"{field}: required, a non-empty array of segment definition ids.")
    out: list[str] = []
    for i, ident in enumerate(items):
        if not isinstance(ident, str) or not ident.strip():
            raise BadRequest(f"{field}[{i}]: expected a segment definition id (a non-empty string).")
        if ident.strip() not in out:
            out.append(ident.strip())
    return out


def _schedule_id(body: Any, what: str) -> str:
    if not isinstance(body, Mapping):
        raise BadRequest(f'body: expected a JSON object such as {{"id": "<schedule id>"{what}}}.')
    ident = body.get("id")
    if not isinstance(ident, str) or not ident.strip():
        raise BadRequest("id: required, the id of a schedule of this sandbox.")
    return ident.strip()


class ScheduleAudiences:
    """The four operations in one (org, sandbox); :class:`SchedulesService` exposes them."""

    def __init__(self, ctx: ServiceContext, schedules):
        self.ctx = ctx
        self.schedules = schedules  # the SchedulesService of this context (row lookup, documents)

    # --- which definitions exist -----------------------------------------------------------------------------------
    def _definitions(self, session) -> dict[str, bool]:
        """Definition id -> whether a ``"*"`` schedule evaluates it (batch, not inactive)."""

        rows = self.ctx.repo(session, models.SegmentDefinition).find()
        return {r.id: batch_evaluated(r) for r in rows}

    @staticmethod
    def _count(segments: list[str], definitions: Mapping[str, bool]) -> int:
        if segments == [ALL]:
            return sum(1 for batch in definitions.values() if batch)
        return len(segments)

    def _batch_row(self, session, schedule_id: str) -> models.Schedule:
        row = self.schedules._row(session, schedule_id, for_update=True)
        if row.type != "batch_segmentation":
            raise BadRequest(
                f"id: schedule '{schedule_id}' is an {row.type} schedule; audiences belong to batch_segmentation "
                "schedules only."
            )
        return row

    def _write(self, session, row: models.Schedule, segments: list[str]) -> None:
        doc = dict(row.body)
        doc["properties"] = {**(doc.get("properties") or {}), "segments": segments}
        self.ctx.repo(session, models.Schedule).update(row, body=doc)

    # --- operations ------------------------------------------------------------------------------------------------
    def add(self, body: Any) -> dict[str, Any]:
        def change(current: list[str], definitions: Mapping[str, bool], wanted: list[str]):
            added, existing, invalid = [], [], []
            for ident in wanted:
                if ident not in definitions:
                    invalid.append(ident)
                elif ident in current or (current == [ALL] and definitions[ident]):
                    existing.append(ident)
                elif current == [ALL]:
                    # Not batch (e.g. inactive): "*" skips it; name it explicitly next to every batch one.
                    current = [d for d, batch in definitions.items() if batch]
                    current.append(ident)
                    added.append(ident)
                else:
                    current = [*current, ident]
                    added.append(ident)
            return current, {"added": added, "existing": existing, "invalid": invalid}

        return self._change_segments(body, change)

    def remove(self, body: Any) -> dict[str, Any]:
        def change(current: list[str], definitions: Mapping[str, bool], wanted: list[str]):
            if current == [ALL] and any(definitions.get(i) for i in wanted):
                # "*" minus some: the schedule now names every other batch definition explicitly.
                current = [d for d, batch in definitions.items() if batch]
            removed = [i for i in wanted if i in current]
            not_found = [i for i in wanted if i not in current]
            return [s for s in current if s not in removed], {"removed": removed, "notFound": not_found}

        return self._change_segments(body, change)

    def _change_segments(self, body: Any, change) -> dict[str, Any]:
        """Apply ``change(segments, definitions, wanted) -> (new segments, result)`` to a batch schedule's
        ``segments``; the result with the number of definitions the schedule evaluates before and after."""
        schedule_id = _schedule_id(body, ', "segments": ["<definition id>"]')
        wanted = _ids(body)
        with self.ctx.catalog.session() as session:
            row = self._batch_row(session, schedule_id)
            definitions = self._definitions(session)
            current = list((row.body.get("properties") or {}).get("segments") or [])
            segments, result = change(current, definitions, wanted)
            if segments != current:
                self._write(session, row, segments)
            previous, now = self._count(current, definitions), self._count(segments, definitions)
        return {**result, "segmentCount": {"previous": previous, "current": now, "diff": now - previous}}

    def audience_map(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise BadRequest('body: expected a JSON object such as {"segments": ["<definition id>"]}.')
        wanted = _ids(body)
        m = models.Schedule
        with self.ctx.catalog.session(readonly=True) as session:
            definitions = self._definitions(session)
            rows = self.ctx.repo(session, m).find(
                m.type == "batch_segmentation", m.state != "deleted", order_by=[m.created_ms]
            )
            audience_map: dict[str, list[str]] = {}
            used: dict[str, models.Schedule] = {}
            for ident in wanted:
                ids = []
                for row in rows:
                    segments = (row.body.get("properties") or {}).get("segments") or []
                    if ident in segments or (segments == [ALL] and definitions.get(ident)):
                        ids.append(row.id)
                        used[row.id] = row
                audience_map[ident] = ids
            schedules = {
                sid: {"name": row.name, "schedule": row.cron, "frequency": frequency(row.dagster_cron)}
                for sid, row in used.items()
            }
        return {"audienceMap": audience_map, "schedules": schedules}

    def trigger(self, body: Any) -> dict[str, Any]:
        """Evaluate the schedule's audiences now: a new segment job (``source: "scheduler"``), launched like one
        created through ``POST /segment/jobs``. The contract answers 200 without a body; we return the job."""

        schedule_id = _schedule_id(body, "")
        with self.ctx.catalog.session(readonly=True) as session:
            row = self.schedules._row(session, schedule_id)
            if row.type != "batch_segmentation":
                raise BadRequest(
                    f"id: schedule '{schedule_id}' is an {row.type} schedule; only batch_segmentation schedules "
                    "can be triggered."
                )
            segments = list((row.body.get("properties") or {}).get("segments") or [])
        if not segments:
            raise BadRequest(f"id: schedule '{schedule_id}' has no audiences; add some with add-audiences.")
        return SegmentJobsService(self.ctx).create(
            [{"segmentId": s} for s in segments],
            source="scheduler",
            properties={"scheduleId": schedule_id, "runId": str(uuid.uuid4()), TRIGGER: "manual"},
        )
