"""Schedules (``/config/schedules``): cron-driven batch segmentation (and export) in one (org, sandbox).

A row keeps the user's Quartz string (``cron``), the 5-field cron Dagster runs (``dagster_cron``, see
:mod:`segmentation_pipelines.service.quartz`), the time zone and the AEP ``Schedule`` document. Each row becomes a
Dagster ``ScheduleDefinition`` when the code location loads (``defs/schedules``); the catalog's ``state`` is the
source of truth: a change through the API reloads the code location and starts or stops the schedule in the Dagster
instance (:class:`DagsterScheduleControl`).

A sandbox gets one inactive daily ``batch_segmentation`` schedule over ``["*"]`` on first access, as the platform
does. It has a deterministic id; deleting it leaves a tombstone row (state ``deleted``) so it is not re-created.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from segmentation_pipelines.catalog import Catalog, models
from segmentation_pipelines.dagster_schedule_control import DagsterScheduleControl
from segmentation_pipelines.errors import BadRequest, Conflict, NotFound
from segmentation_pipelines.launcher import dagster_schedule_name
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.export_jobs import ExportJobsService
from segmentation_pipelines.service.quartz import QuartzError, convert, validate_timezone
from segmentation_pipelines.service.query import int_param
from segmentation_pipelines.service.schedule_audiences import ScheduleAudiences
from segmentation_pipelines.service.segment_jobs import SegmentJobsService
from segmentation_pipelines.settings import Settings

log = logging.getLogger(__name__)

BATCH_SEGMENTATION = "batch_segmentation"
EXPORT = "export"
TYPES = (BATCH_SEGMENTATION, EXPORT)
ACTIVE, INACTIVE = "active", "inactive"
STATES = (ACTIVE, INACTIVE)
DELETED = "deleted"  # tombstone of the default schedule only; never returned

DEFAULT_NAME = "profile-default"
DEFAULT_CRON = "0 0 1 * * ?"  # 01:00 UTC daily
DEFAULT_LIMIT = 100
PATCH_PATHS = ("/state", "/schedule")
PATCH_OPS = ("add", "replace")  # the contract says "add"; the FBS examples use "replace"
EXPORT_NOTE = (
    "Export schedules create an export job on every tick (its request is the schedule's properties)."
)

# Dagster side (defs/schedules): the job every schedule targets and the name of the schedule of a row.
JOB_NAME = "segment_job"
_ID_NAMESPACE = uuid.UUID("6b7c1a52-3f0e-4b55-9a55-5f6c8f2f1d11")
_defaults_seen: set[tuple[str, str, str]] = set()


def default_schedule_id(org_id: str, sandbox: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"default-schedule/{org_id}/{sandbox}"))


def tick_ids(schedule_id: str, scheduled_ms: int) -> tuple[str, str]:
    """(segment job id, scheduler run id) of one tick: deterministic, so a re-evaluated tick finds its job."""
    return (
        str(uuid.uuid5(_ID_NAMESPACE, f"segment-job/{schedule_id}/{scheduled_ms}")),
        str(uuid.uuid5(_ID_NAMESPACE, f"schedule-run/{schedule_id}/{scheduled_ms}")),
    )


def schedule_snapshot(settings: Settings) -> list[dict[str, Any]]:
    """Every live schedule of every sandbox, as the Dagster definitions need them (read at code-location load)."""

    settings.ensure_home()
    catalog = Catalog.for_url(settings.resolved_catalog_url)
    m = models.Schedule
    with catalog.session(readonly=True) as session:
        rows = session.scalars(select(m).where(m.state != DELETED).order_by(m.created_ms, m.id))
        return [
            {
                "id": r.id,
                "org_id": r.org_id,
                "sandbox": r.sandbox,
                "name": r.name,
                "type": r.type,
                "state": r.state,
                "cron": r.cron,
                "dagster_cron": r.dagster_cron,
                "timezone": r.timezone,
                "updated_ms": r.updated_ms,
            }
            for r in rows
        ]


class SchedulesService:
    """``/config/schedules`` in one (org, sandbox)."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    # --- REST operations ---------------------------------------------------------------------------------------

    def create(self, body: Any) -> dict:
        self._ensure_default()
        if not isinstance(body, Mapping):
            raise BadRequest("body: expected a JSON object with name, type, properties and schedule.")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("name: required, a non-empty string.")
        kind = body.get("type")
        if kind not in TYPES:
            raise BadRequest(f"type: required, one of {', '.join(TYPES)} (got {kind!r}).")
        state = body.get("state", INACTIVE)
        if state not in STATES:
            raise BadRequest(f"state: one of {', '.join(STATES)} (got {state!r}).")
        properties = self._validate_properties(kind, body.get("properties"))
        converted = _convert(body.get("schedule", DEFAULT_CRON), body.get("timezone"))
        doc = {
            "name": name.strip(),
            "type": kind,
            "properties": properties,
            "schedule": converted.quartz,
            "state": state,
            "timezone": converted.timezone,
        }
        with self.ctx.catalog.session() as session:
            row = self.ctx.repo(session, models.Schedule).add(
                name=doc["name"],
                type=kind,
                state=state,
                cron=converted.quartz,
                dagster_cron=converted.cron,
                timezone=converted.timezone,
                body=doc,
            )
            result = self._doc(row)
        DagsterScheduleControl(self.ctx.settings).apply(result["id"], result["name"], state)
        return result

    def get(self, schedule_id: str) -> dict:
        self._ensure_default()
        with self.ctx.catalog.session(readonly=True) as session:
            return self._doc(self._row(session, schedule_id))

    def list(self, **query: Any) -> dict:
        self._ensure_default()
        start = int_param(query, "start", 0)
        limit = int_param(query, "limit", DEFAULT_LIMIT, minimum=1)
        m = models.Schedule
        with self.ctx.catalog.session(readonly=True) as session:
            repo = self.ctx.repo(session, m)
            total = repo.count(m.state != DELETED)
            rows = repo.find(m.state != DELETED, order_by=[m.created_ms, m.id], offset=start, limit=limit)
            children = [self._doc(r) for r in rows]
        page: dict[str, Any] = {"totalCount": total, "pageSize": len(children)}
        links: dict[str, Any] = {}
        if start + limit < total:
            page["next"] = str(start + limit)
            links["next"] = {"href": f"/config/schedules?start={start + limit}&limit={limit}"}
        return {"_page": page, "children": children, "_links": links}

    def update(self, schedule_id: str, patch: Any) -> None:
        """Apply a JSON Patch on ``/state`` and ``/schedule`` (all or nothing); the contract answers 204."""
        self._ensure_default()
        if not isinstance(patch, list) or not patch:
            raise BadRequest(
                'body: expected a JSON Patch array such as [{"op": "add", "path": "/state", ...}].'
            )
        changes: dict[str, Any] = {}
        for i, op in enumerate(patch):
            if not isinstance(op, Mapping):
                raise BadRequest(f"body[{i}]: expected an object with op, path and value.")
            if op.get("op") not in PATCH_OPS:
                raise BadRequest(f"body[{i}].op: must be 'add' (got {op.get('op')!r}).")
            path = op.get("path")
            if path not in PATCH_PATHS:
                raise BadRequest(f"body[{i}].path: must be one of {', '.join(PATCH_PATHS)} (got {path!r}).")
            if "value" not in op:
                raise BadRequest(f"body[{i}].value: required.")
            changes[path] = (i, op["value"])
        with self.ctx.catalog.session() as session:
            row = self._row(session, schedule_id, for_update=True)
            doc = dict(row.body)
            columns: dict[str, Any] = {}
            if "/state" in changes:
                i, value = changes["/state"]
                if value not in STATES:
                    raise BadRequest(
                        f"body[{i}].value: state must be one of {', '.join(STATES)} (got {value!r})."
                    )
                columns["state"] = doc["state"] = value
            if "/schedule" in changes:
                i, value = changes["/schedule"]
                converted = _convert(value, row.timezone, where=f"body[{i}].value")
                columns.update(cron=converted.quartz, dagster_cron=converted.cron)
                doc["schedule"] = converted.quartz
            self.ctx.repo(session, models.Schedule).update(row, body=doc, **columns)
            state, name = row.state, row.name
        DagsterScheduleControl(self.ctx.settings).apply(schedule_id, name, state)
        return None

    def delete(self, schedule_id: str) -> None:
        self._ensure_default()
        with self.ctx.catalog.session() as session:
            row = self._row(session, schedule_id, for_update=True)
            name = row.name
            repo = self.ctx.repo(session, models.Schedule)
            if row.id == default_schedule_id(self.ctx.org_id, self.ctx.sandbox):
                repo.update(row, state=DELETED)  # tombstone: the default is not re-created
            else:
                repo.delete(row)
        DagsterScheduleControl(self.ctx.settings).apply(schedule_id, name, None)
        return None

    def record_dagster_state(self, schedule_id: str, state: str) -> None:
        """Write a state set in Dagster (the UI's toggle) to the catalog, without writing it back to Dagster."""
        if state not in STATES:
            raise BadRequest(f"state: one of {', '.join(STATES)} (got {state!r}).")
        with self.ctx.catalog.session() as session:
            row = self._row(session, schedule_id, for_update=True)
            self.ctx.repo(session, models.Schedule).update(
                row, state=state, body={**row.body, "state": state}
            )

    # --- audience operations (Flexible Batch Schedules; service/schedule_audiences.py) -------------------------

    def add_audiences(self, body: Any) -> dict:
        self._ensure_default()
        return self._audiences().add(body)

    def remove_audiences(self, body: Any) -> dict:
        self._ensure_default()
        return self._audiences().remove(body)

    def audience_map(self, body: Any) -> dict:
        self._ensure_default()
        return self._audiences().audience_map(body)

    def trigger(self, body: Any) -> dict:
        self._ensure_default()
        return self._audiences().trigger(body)

    def _audiences(self):

        return ScheduleAudiences(self.ctx, self)

    # --- Dagster ticks ------------------------------------------------------------------------------------------

    def fire(
        self,
        schedule_id: str,
        scheduled_time: datetime,
        expected_cron: str | None = None,
        expected_timezone: str | None = None,
    ) -> dict:
        """One tick of a schedule: ``{"run_request": {...}}`` (the segment job's run) or ``{"skip": reason}``.

        The tick creates a segment job (``source: "scheduler"``, ``properties: {scheduleId, runId}``) whose id is
        derived from the schedule and the scheduled time, so a tick evaluated twice (daemon restart) finds the same
        job and the same run key. The catalog decides: a deleted or inactive schedule, or one whose cron changed
        since the code location loaded (``expected_cron``/``expected_timezone``), does not fire.
        """

        try:
            doc = self.get(schedule_id)
        except NotFound:
            return {"skip": f"Schedule {schedule_id} no longer exists in the catalog."}
        if doc["state"] != ACTIVE:
            return {
                "skip": f"Schedule {schedule_id} is {doc['state']} in the catalog; activate it through the API."
            }
        dagster = doc["dagster"]
        if (expected_cron, expected_timezone) != (None, None) and (
            dagster["cron"],
            dagster["executionTimezone"],
        ) != (expected_cron, expected_timezone):
            return {
                "skip": f"Schedule {schedule_id} changed since the code location loaded; waiting for a reload."
            }
        scheduled_ms = int(round(scheduled_time.timestamp() * 1000))
        job_id, run_id = tick_ids(schedule_id, scheduled_ms)
        if doc["type"] == EXPORT:
            try:
                request, export_id = ExportJobsService(self.ctx).fire_schedule(
                    schedule_id, run_id, doc["properties"]
                )
            except BadRequest as exc:  # e.g. the destination dataset was deleted
                return {"skip": f"Schedule {schedule_id}: {exc.message}"}
            return {"run_request": request, "job_id": export_id}
        jobs = SegmentJobsService(self.ctx)
        segments = [{"segmentId": s} for s in doc["properties"]["segments"]]
        try:
            jobs.create(
                segments,
                evaluation_time=scheduled_time,
                source="scheduler",
                properties={"scheduleId": schedule_id, "runId": run_id},
                job_id=job_id,
                launch=False,
            )
        except Conflict:
            pass  # this tick was evaluated before (e.g. the daemon restarted): same job, same run key
        except BadRequest as exc:  # e.g. "*" in a sandbox without batch definitions
            return {"skip": f"Schedule {schedule_id}: {exc.message}"}
        return {"run_request": jobs.run_request_for(job_id), "job_id": job_id}

    # --- helpers -----------------------------------------------------------------------------------------------

    def _ensure_default(self) -> None:
        """Create the sandbox's default schedule the first time the sandbox's schedules are used."""
        key = (self.ctx.catalog.url, self.ctx.org_id, self.ctx.sandbox)
        if key in _defaults_seen:
            return
        ident = default_schedule_id(self.ctx.org_id, self.ctx.sandbox)
        converted = convert(DEFAULT_CRON)
        doc = {
            "name": DEFAULT_NAME,
            "type": BATCH_SEGMENTATION,
            "properties": {"segments": ["*"]},
            "schedule": converted.quartz,
            "state": INACTIVE,
            "timezone": converted.timezone,
        }
        try:
            with self.ctx.catalog.session() as session:
                if session.get(models.Schedule, ident) is None:
                    self.ctx.repo(session, models.Schedule).add(
                        id=ident,
                        name=DEFAULT_NAME,
                        type=BATCH_SEGMENTATION,
                        state=INACTIVE,
                        cron=converted.quartz,
                        dagster_cron=converted.cron,
                        timezone=converted.timezone,
                        body=doc,
                    )
        except IntegrityError:  # another process created it at the same moment
            pass
        _defaults_seen.add(key)

    def _row(self, session, schedule_id: str, for_update: bool = False) -> models.Schedule:
        row = self.ctx.repo(session, models.Schedule).get(schedule_id, for_update=for_update)
        if row is None or row.state == DELETED:
            raise NotFound("Schedule", schedule_id)
        return row

    def _validate_properties(self, kind: str, properties: Any) -> dict:
        if not isinstance(properties, Mapping):
            raise BadRequest("properties: required, an object.")
        properties = dict(properties)
        if kind == BATCH_SEGMENTATION:
            properties["segments"] = self._validate_segments(properties.get("segments"))
        else:
            _validate_export_request(properties)
        return properties

    def _validate_segments(self, segments: Any) -> list[str]:
        if not isinstance(segments, list) or not segments:
            raise BadRequest(
                'properties.segments: required for batch_segmentation, ["*"] or segment definition ids.'
            )
        for i, ident in enumerate(segments):
            if not isinstance(ident, str) or not ident.strip():
                raise BadRequest(f"properties.segments[{i}]: expected a segment definition id (or '*').")
        if "*" in segments:
            if len(segments) != 1:
                raise BadRequest('properties.segments: "*" selects every definition and must stand alone.')
            return ["*"]
        with self.ctx.catalog.session(readonly=True) as session:
            repo = self.ctx.repo(session, models.SegmentDefinition)
            for i, ident in enumerate(segments):
                if repo.get(ident) is None:
                    raise BadRequest(
                        f"properties.segments[{i}]: segment definition '{ident}' was not found in this sandbox."
                    )
        return list(dict.fromkeys(segments))

    def _doc(self, row: models.Schedule) -> dict:
        doc = {
            "id": row.id,
            "imsOrgId": row.org_id,
            "sandbox": self.ctx.sandbox_doc(),
            **{k: v for k, v in row.body.items()},
            "state": row.state,
            "schedule": row.cron,
            "timezone": row.timezone,
            "createEpoch": row.created_ms // 1000,
            "updateEpoch": row.updated_ms // 1000,
            # Extension: what Dagster runs (the schedule's name in the Dagster UI and its 5-field cron).
            "dagster": {
                "scheduleName": dagster_schedule_name(row.id, row.name),
                "cron": row.dagster_cron,
                "executionTimezone": row.timezone,
            },
        }
        if row.type == EXPORT:
            doc["notes"] = [EXPORT_NOTE]
            doc["dagster"]["job"] = "export_job"
        return doc


def _convert(schedule: Any, timezone: Any, where: str = "schedule"):
    if not isinstance(schedule, str):
        raise BadRequest(f"{where}: expected a Quartz cron string such as '0 0 1 * * ?'.")
    try:
        tz = validate_timezone(timezone)
    except QuartzError as exc:
        raise BadRequest(f"timezone: {exc}") from None
    try:
        return convert(schedule, tz)
    except QuartzError as exc:
        raise BadRequest(f"{where} '{schedule}': {exc}") from None


def _validate_export_request(properties: Mapping[str, Any]) -> None:
    """The export job request an ``export`` schedule will submit (aep-api §8): the required parts and shapes."""
    destination = properties.get("destination")
    if not isinstance(destination, Mapping) or not isinstance(destination.get("datasetId"), str):
        raise BadRequest(
            "properties.destination.datasetId: required for an export schedule (the target dataset)."
        )
    schema = properties.get("schema")
    if not isinstance(schema, Mapping) or not isinstance(schema.get("name"), str):
        raise BadRequest(
            "properties.schema.name: required for an export schedule (e.g. '_xdm.context.profile')."
        )
    if "fields" in properties and not isinstance(properties["fields"], str):
        raise BadRequest("properties.fields: expected a comma-separated string of field paths.")
    flt = properties.get("filter")
    if flt is None:
        return
    if not isinstance(flt, Mapping):
        raise BadRequest("properties.filter: expected an object.")
    for i, seg in enumerate(flt.get("segments") or []):
        if not isinstance(seg, Mapping) or not isinstance(seg.get("segmentId"), str):
            raise BadRequest(f"properties.filter.segments[{i}].segmentId: required, a segment definition id.")
        bad = [s for s in seg.get("status") or [] if s not in ("realized", "existing", "exited")]
        if bad:
            raise BadRequest(
                f"properties.filter.segments[{i}].status: '{bad[0]}' is not realized, existing or exited."
            )
