"""Export jobs (``/export/jobs``): audience members (profile fields, ``identityMap``, ``segmentMembership``) written
to a batch of a profile dataset, as tracked Dagster runs.

A job row is the contract's ``ExportJob`` document (integer id) plus ``status``, ``attempt`` and ``run_id``. Its life
(the same as a segment job's, see ``service/segment_jobs.py``):

* ``create`` validates the request and writes it ``NEW``; the ``export_job_launcher`` sensor (or the API's runner
  without a daemon) claims it, ``PROCESSING``, and launches a run of ``export_job`` (run key
  ``"<id>:<attempt>"``) selecting the destination's export asset, after the segments it reads when
  ``evaluationInfo.segmentation`` is true (one run evaluates, then exports). ``wait=True`` runs it in this process.
* The export asset calls :meth:`ExportJobsService.execute`: publish gates, then one batch (or one per segment with
  ``segmentPerBatch``) written under a staging folder, renamed into the dataset and recorded in the catalog in
  one transaction only if the job was not cancelled meanwhile: a cancel or a failure leaves no batch.
* Run-status sensors, the reconciliation pass and reading the job write the run's outcome back
  (``sync_with_run``): ``SUCCESS`` -> ``SUCCEEDED``, ``FAILURE`` -> ``FAILED`` (with ``errors``), ``CANCELED`` ->
  ``CANCELLED``. A cancel marks the job and terminates its run; the writer polls and stops within a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import object_session

from segmentation_pipelines import code_location
from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.errors import BadRequest, Conflict, NotFound
from segmentation_pipelines.launcher import (
    EXPORT_JOB,
    KIND_EXPORT_JOB,
    RUN_STATUS_TO_REQUEST,
    TAG_GATE_OVERRIDE,
    RunRequest,
    definition_asset_key,
    evaluation_partition,
    export_asset_key,
    run_status_name,
)
from segmentation_pipelines.profiles.layout import StoreLayout
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.export_destinations import destination_key, destination_known
from segmentation_pipelines.service.export_gates import PublishGates
from segmentation_pipelines.service.export_requests import ExportRequests, parse_rfc3339
from segmentation_pipelines.service.export_writer import ExportWriter
from segmentation_pipelines.service.profile_store import ProfileStoreService
from segmentation_pipelines.service.query import int_param, status_filter
from segmentation_pipelines.service.tracked_runs import INTERNAL, TrackedRuns, error_list, with_internal

log = logging.getLogger(__name__)

KIND = KIND_EXPORT_JOB
JOB_NAME = EXPORT_JOB
NEW, PROCESSING, SUCCEEDED, FAILED, CANCELLED = "NEW", "PROCESSING", "SUCCEEDED", "FAILED", "CANCELLED"
STATUSES = (NEW, PROCESSING, SUCCEEDED, FAILED, CANCELLED)
ACTIVE = frozenset({NEW, PROCESSING})
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class ExportJobsService(TrackedRuns):
    """``/export/jobs`` in one (org, sandbox); see the module docstring for the life of a job."""

    model = models.ExportJob
    what = "Export job"
    CLAIMED = PROCESSING
    TERMINAL = TERMINAL
    RUNNING = (PROCESSING,)
    WORK_METRIC = "profileExportTime"
    DEFAULT_ERROR = "The Dagster run of this export job failed."

    def __init__(self, ctx: ServiceContext):
        super().__init__(ctx)
        self.layout = StoreLayout(ctx.sandbox_root)

    # --- REST operations ---------------------------------------------------------------------------------------

    def create(
        self,
        body: Any,
        *,
        wait: bool = False,
        launch: bool = True,
        properties: Mapping[str, Any] | None = None,
    ) -> dict:
        """Validate and record an export request. ``wait=True``: run it now in this process through Dagster and
        return the finished job; ``launch=False``: the caller (a schedule tick) launches the run itself."""
        request = ExportRequests(self.ctx).validated(body)
        now = now_ms()
        mode = "in_process" if wait else ("sensor" if launch else "caller")
        status = NEW if mode == "sensor" else PROCESSING
        doc: dict[str, Any] = {
            "jobType": "BATCH",
            **request,
            "imsOrgId": self.ctx.org_id,
            "sandbox": self.ctx.sandbox_doc(),
            "profileInstanceId": "ups",
            "status": status,
            "metrics": {"totalTime": {"startTimeInMs": now}, "profileExportTime": {}},
            INTERNAL: {"launch": mode},
        }
        if properties:
            doc["properties"] = dict(properties)
        if self.ctx.request_id is not None:
            doc["requestId"] = self.ctx.request_id
        with self.ctx.catalog.session() as session:
            new_destination = not destination_known(session, self.ctx.org_id, self.ctx.sandbox, request)
            row = models.ExportJob(
                org_id=self.ctx.org_id,
                sandbox=self.ctx.sandbox,
                created_ms=now,
                updated_ms=now,
                body=doc,
                status=status,
                attempt=0 if mode == "sensor" else 1,
            )
            session.add(row)
            session.flush()
            job_id = row.id
        if new_destination:  # the destination's export asset (and its deps) appears at the next load
            code_location.request_reload(self.ctx.settings)
        if wait:
            return self.run_in_process(job_id)
        return self.get(job_id)

    def get(self, job_id: Any) -> dict:
        """The job; an active one whose run has ended is settled first (no wait for a sensor to notice)."""
        ident = _job_id(job_id)
        with self.ctx.catalog.session(readonly=True) as session:
            row = self._row(session, ident)
            doc, run_id = self._doc(row), row.run_id
        return self.settle_on_read(ident, doc["status"], run_id) or doc

    def list(self, **query: Any) -> dict:
        """Newest first; ``offset`` is the cursor ``"<creationTimeMs>_<id>"`` of the last job of the previous page.
        Filters: ``status`` (comma-separated), ``createdAfter`` / ``createdBefore`` (RFC 3339 or epoch ms)."""
        limit = int_param(query, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        m = models.ExportJob
        where = []
        status = query.get("status")
        if status:
            where.append(m.status.in_(status_filter(status, STATUSES)))
        for name, compare in (("createdAfter", m.created_ms.__gt__), ("createdBefore", m.created_ms.__lt__)):
            if query.get(name) not in (None, ""):
                where.append(compare(_time_ms(query[name], name)))
        if query.get("datasetId"):
            dataset = str(query["datasetId"])
        else:
            dataset = None
        offset = query.get("offset")
        if offset not in (None, ""):
            ms, _, ident = str(offset).partition("_")
            if not (ms.isdigit() and ident.isdigit()):
                raise BadRequest(
                    f"offset: '{offset}' is not a cursor '<creationTimeMs>_<id>' from page.pageOffset."
                )
            ms_i, id_i = int(ms), int(ident)
            where.append((m.created_ms < ms_i) | ((m.created_ms == ms_i) & (m.id < id_i)))
        with self.ctx.catalog.session(readonly=True) as session:
            q = (
                select(m)
                .where(m.org_id == self.ctx.org_id, m.sandbox == self.ctx.sandbox, *where)
                .order_by(m.created_ms.desc(), m.id.desc())
            )
            if dataset is None:
                rows = list(session.scalars(q.limit(limit + 1)))
            else:  # the destination is inside the document: filtered here
                rows = [
                    r
                    for r in session.scalars(q)
                    if (r.body.get("destination") or {}).get("datasetId") == dataset
                ]
                rows = rows[: limit + 1]
            more = len(rows) > limit
            records = [self._doc(r) for r in rows[:limit]]
        page: dict[str, Any] = {"sortField": "createdTime", "sort": "desc", "pageSize": len(records)}
        link: dict[str, Any] = {}
        if records:
            last = records[-1]
            page["pageOffset"] = f"{last['creationTime']}_{last['id']}"
            if more:
                params = "".join(
                    f"&{k}={v}"
                    for k, v in query.items()
                    if k not in ("limit", "offset") and v not in (None, "")
                )
                link["next"] = f"/export/jobs/?limit={limit}&offset={page['pageOffset']}{params}"
        return {"records": records, "page": page, "link": link}

    def delete(self, job_id: Any) -> dict:
        """Cancel: a ``NEW`` job is ``CANCELLED`` at once; a running one is marked and its run terminated (its
        writer stops and publishes nothing)."""
        ident = _job_id(job_id)
        with self.ctx.catalog.session() as session:
            row = self._row(session, ident, lock=True)
            if row.status in TERMINAL:
                raise Conflict(f"Export job '{ident}' has already ended with status {row.status}.")
            if (row.body.get(INTERNAL) or {}).get("published"):
                raise Conflict(
                    f"Export job '{ident}' has already published its batch; it can no longer be cancelled."
                )
            status, run_id = row.status, row.run_id
            with_internal(row, cancelRequested=now_ms())
            if status == NEW:
                self._set_status(session, row, CANCELLED)
            else:
                self._touch(session, row)
        if status == PROCESSING:
            run_id = run_id or self._find_run_id(ident)
            run_status = self._terminate(ident, run_id) if run_id else None
            if run_status in ("CANCELED", "FAILURE", "SUCCESS"):
                self.sync_with_run(ident, run_status, run_id)
        return {"status": True, "message": "Export job has been marked for cancelling"}

    def fire_schedule(
        self, schedule_id: str, run_id: str, request: Mapping[str, Any]
    ) -> tuple[RunRequest, int]:
        """One tick of an ``export`` schedule: the export job of the tick (created once: a tick evaluated twice
        finds the job it created) and its run."""
        m = models.ExportJob
        with self.ctx.catalog.session(readonly=True) as session:
            scoped = select(m.id, m.body).where(m.org_id == self.ctx.org_id, m.sandbox == self.ctx.sandbox)
            earlier = [
                i
                for i, body in session.execute(scoped)
                if (body.get("properties") or {}).get("runId") == run_id
            ]
        if earlier:
            return self.run_request_for(earlier[0]), earlier[0]
        body = {k: v for k, v in request.items()}
        job = self.create(body, launch=False, properties={"scheduleId": schedule_id, "runId": run_id})
        return self.run_request_for(job["id"]), job["id"]

    # --- publish gates (extension: /export/gates/{definitionId}) ----------------------------------------------

    def set_gates(self, definition_id: str, body: Any) -> dict:
        return PublishGates(self.ctx).set(definition_id, body)

    def get_gates(self, definition_id: str) -> dict:
        return PublishGates(self.ctx).get(definition_id)

    def delete_gates(self, definition_id: str) -> None:
        PublishGates(self.ctx).delete(definition_id)

    # --- Dagster side ------------------------------------------------------------------------------------------

    def sync_with_run(self, job_id: Any, run_status: Any, run_id: str | None, error: Any = None) -> dict:
        """Write a Dagster run's status onto its job (idempotent; terminal jobs never change)."""
        ident = _job_id(job_id)
        target = RUN_STATUS_TO_REQUEST.get(run_status_name(run_status))
        with self.ctx.catalog.session() as session:
            row = self._row(session, ident, lock=True)
            if run_id and row.status not in TERMINAL and row.run_id != run_id:
                row.run_id = run_id
                self._touch(session, row)
            if row.status in TERMINAL or target is None:
                return self._doc(row)
            internal = row.body.get(INTERNAL) or {}
            if target in (SUCCEEDED, FAILED, CANCELLED):
                if target == SUCCEEDED and not internal.get("published"):
                    # The run ended well without publishing: a cancel stopped the writer, or the export step was
                    # skipped (a blocking publish gate failed in the same run).
                    if internal.get("cancelRequested"):
                        target = CANCELLED
                    else:
                        target, error = (
                            FAILED,
                            error or internal.get("errors") or "The export step did not run.",
                        )
                if target == FAILED and internal.get("cancelRequested") and not internal.get("published"):
                    target = CANCELLED
                errors = (
                    error_list(internal.get("errors") or error, self.DEFAULT_ERROR)
                    if target == FAILED
                    else None
                )
                self._set_status(session, row, target, errors=errors)
            elif target in ("QUEUED", "PROCESSING", "CANCELLING") and row.status == NEW:
                self._set_status(session, row, PROCESSING)
            return self._doc(row)

    def cancel_requested(self, job_id: int) -> bool:
        with self.ctx.catalog.session(readonly=True) as session:
            row = session.get(models.ExportJob, int(job_id))
            return (
                row is None
                or row.status in TERMINAL
                or bool((row.body.get(INTERNAL) or {}).get("cancelRequested"))
            )

    def should_cancel(self, job_id: int, extra: Callable[[], bool] | None = None, every_s: float = 0.5):
        state = {"at": 0.0, "value": False}

        def check() -> bool:
            if not state["value"] and extra is not None and extra():
                state["value"] = True
            if not state["value"] and time.monotonic() - state["at"] >= every_s:
                state["at"] = time.monotonic()
                state["value"] = self.cancel_requested(job_id)
            return state["value"]

        return check

    def execute(self, job_id: int, should_cancel: Callable[[], bool] | None = None, progress=None) -> dict:
        """The export itself, called by the export asset (``service/export_writer.py``)."""
        return ExportWriter(self).execute(job_id, should_cancel=should_cancel, progress=progress)

    # --- internals ---------------------------------------------------------------------------------------------

    @staticmethod
    def _key(ident: Any) -> int:
        return _job_id(ident)

    def cancelling(self, row: models.ExportJob) -> bool:
        return bool((row.body.get(INTERNAL) or {}).get("cancelRequested"))

    def _prepare_request(self, job_id: int) -> list[list[str]]:
        """The stale profile-store assets a run refreshes before it evaluates (only when it evaluates). Read
        before the job row is locked: it opens its own catalog session."""
        with self.ctx.catalog.session(readonly=True) as session:
            doc = self._row(session, job_id).body
        if not (
            (doc.get("evaluationInfo") or {}).get("segmentation")
            and (doc.get("filter") or {}).get("segments")
        ):
            return []
        return ProfileStoreService(self.ctx).refresh_selection()

    def _run_request(self, row: models.ExportJob, store: list[list[str]]) -> RunRequest:
        doc = row.body
        ids = [s["segmentId"] for s in (doc.get("filter") or {}).get("segments") or []]
        keys: list[list[str]] = []
        partition = None
        if (doc.get("evaluationInfo") or {}).get("segmentation") and ids:
            m = models.SegmentDefinition
            bodies = dict(
                object_session(row)
                .execute(
                    select(m.id, m.body).where(
                        m.org_id == row.org_id, m.sandbox == row.sandbox, m.id.in_(ids)
                    )
                )
                .all()
            )
            keys += store
            keys += [definition_asset_key({**(bodies.get(i) or {}), "id": i}) for i in ids]
            # Segment assets are partitioned by evaluation day: evaluating now fills today's (launcher.py).
            partition = evaluation_partition(datetime.now(UTC))
        keys.append(export_asset_key(destination_key(doc["destination"])))
        override = (doc.get("publishGates") or {}).get("override")
        tags = {}
        if override:
            tags[TAG_GATE_OVERRIDE] = "*" if override is True else ",".join(override)
        return RunRequest(
            kind=KIND,
            request_id=str(row.id),
            attempt=max(int(row.attempt or 0), 1),
            job_name=JOB_NAME,
            asset_selection=tuple(tuple(k) for k in keys),
            org=row.org_id,
            sandbox=row.sandbox,
            tags=tags,
            partition_key=partition,
        )

    def _doc(self, row: models.ExportJob) -> dict:
        doc = {k: v for k, v in row.body.items() if k != INTERNAL}
        doc["id"] = row.id
        doc["status"] = row.status
        if row.run_id:
            doc["computeGatewayJobId"] = {"exportJob": row.run_id}  # the Dagster run
        doc["creationTime"] = row.created_ms
        doc["updateTime"] = row.updated_ms
        return doc


def _job_id(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise NotFound("Export job", str(value)) from None


def _time_ms(value: Any, name: str) -> int:
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    return int(parse_rfc3339(text, name).timestamp() * 1000)
