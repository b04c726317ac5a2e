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

import hashlib
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import object_session

from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.errors import ApiError, BadRequest, Conflict, NotFound
from segmentation_pipelines.launcher import (
    ERROR_RUN_FAILED,
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
from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.export_gates import ERROR_GATE_FAILED, PublishGates
from segmentation_pipelines.service.export_requests import ExportRequests, parse_rfc3339
from segmentation_pipelines.service.query import int_param
from segmentation_pipelines.timeutil import iso

log = logging.getLogger(__name__)

KIND = KIND_EXPORT_JOB
JOB_NAME = EXPORT_JOB
NEW, PROCESSING, SUCCEEDED, FAILED, CANCELLED = "NEW", "PROCESSING", "SUCCEEDED", "FAILED", "CANCELLED"
STATUSES = (NEW, PROCESSING, SUCCEEDED, FAILED, CANCELLED)
ACTIVE = frozenset({NEW, PROCESSING})
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
ERROR_EXPORT = "SEGP-EXPORT-500"
ERROR_NOT_EVALUATED = "SEGP-EXPORT-409"
MEMORY_LIMIT = "2GB"  # DuckDB spills beyond it: an export streams whatever its size
_INTERNAL = "_internal"  # kept in the row's body, never returned


def _naive(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


def jobs_in_status(catalog, statuses: Iterable[str], limit: int | None = None) -> list[tuple[str, str, int]]:
    """``(org, sandbox, job id)`` of every export job in ``statuses``, oldest first (for the sensors, the runner)."""
    m = models.ExportJob
    query = select(m.org_id, m.sandbox, m.id).where(m.status.in_(list(statuses))).order_by(m.created_ms, m.id)
    if limit is not None:
        query = query.limit(limit)
    with catalog.session(readonly=True) as session:
        return [tuple(row) for row in session.execute(query)]


def destination_key(destination: Mapping[str, Any]) -> str:
    """What names a destination in the asset graph: the dataset id, or ``folder_<hash of the path>``."""
    folder = destination.get("folder")
    if isinstance(folder, Mapping) and isinstance(folder.get("path"), str):
        return "folder_" + hashlib.sha1(folder["path"].encode()).hexdigest()[:12]
    table = destination.get("postgres")
    if isinstance(table, Mapping) and isinstance(table.get("table"), str):
        return f"postgres_{table.get('schema', 'public')}_{table['table']}"
    return str(destination.get("datasetId"))


def destinations_snapshot(catalog) -> list[dict[str, Any]]:
    """Every export destination (from export jobs and export schedules) and the segments exported to it: what the
    code location makes export assets of, downstream of those segments' assets."""
    found: dict[tuple[str, str, str], set[str]] = {}
    with catalog.session(readonly=True) as session:
        rows = [(r.org_id, r.sandbox, r.body) for r in session.scalars(select(models.ExportJob))]
        schedules = session.scalars(select(models.Schedule).where(models.Schedule.type == "export"))
        rows += [(r.org_id, r.sandbox, (r.body or {}).get("properties") or {}) for r in schedules]
    for org, sandbox, body in rows:
        destination = (body or {}).get("destination") or {}
        if not isinstance(destination.get("datasetId"), str) and not (
            destination.get("folder") or destination.get("postgres")
        ):
            continue
        dataset = destination_key(destination)
        segments = ((body.get("filter") or {}).get("segments")) or []
        ids = {
            s.get("segmentId")
            for s in segments
            if isinstance(s, Mapping) and isinstance(s.get("segmentId"), str)
        }
        found.setdefault((org, sandbox, dataset), set()).update(ids)
    return [
        {"org_id": o, "sandbox": s, "dataset_id": d, "segments": sorted(ids)}
        for (o, s, d), ids in sorted(found.items())
    ]


class ExportJobsService:
    """``/export/jobs`` in one (org, sandbox); see the module docstring for the life of a job."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
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
            _INTERNAL: {"launch": mode},
        }
        if properties:
            doc["properties"] = dict(properties)
        if self.ctx.request_id is not None:
            doc["requestId"] = self.ctx.request_id
        with self.ctx.catalog.session() as session:
            new_destination = not self._destination_known(session, request)
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
            from segmentation_pipelines.code_location import request_reload

            request_reload(self.ctx.settings)
        if wait:
            return self.run_in_process(job_id)
        return self.get(job_id)

    def get(self, job_id: Any) -> dict:
        """The job; an active one whose run has ended is settled first (no wait for a sensor to notice)."""
        ident = _job_id(job_id)
        with self.ctx.catalog.session(readonly=True) as session:
            row = self._row(session, ident)
            doc, run_id = self._doc(row), row.run_id
        if doc["status"] == PROCESSING:
            # A run launched by a schedule tick or the sensor may not be recorded on the job yet: found by its tag.
            run = self.ctx.launcher.find_run(str(ident), run_id)
            if run is not None and run.finished:
                errors = self.ctx.launcher.errors(run.run_id) if run.status == "FAILURE" else None
                return self.sync_with_run(ident, run.status, run.run_id, error=errors)
        return doc

    def list(self, **query: Any) -> dict:
        """Newest first; ``offset`` is the cursor ``"<creationTimeMs>_<id>"`` of the last job of the previous page.
        Filters: ``status`` (comma-separated), ``createdAfter`` / ``createdBefore`` (RFC 3339 or epoch ms)."""
        limit = int_param(query, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        m = models.ExportJob
        where = []
        status = query.get("status")
        if status:
            wanted = [s.strip().upper() for s in str(status).split(",") if s.strip()]
            unknown = [s for s in wanted if s not in STATUSES]
            if unknown:
                raise BadRequest(f"status: '{unknown[0]}' is not one of {', '.join(STATUSES)}.")
            where.append(m.status.in_(wanted))
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
            internal = dict(row.body.get(_INTERNAL) or {})
            if internal.get("published"):
                raise Conflict(
                    f"Export job '{ident}' has already published its batch; it can no longer be cancelled."
                )
            status, run_id = row.status, row.run_id
            internal["cancelRequested"] = now_ms()
            row.body = {**row.body, _INTERNAL: internal}
            if status == NEW:
                self._set_status(session, row, CANCELLED)
            else:
                self._touch(session, row)
        if status == PROCESSING:
            run_id = run_id or self._find_run_id(ident)
            run_status = None
            if run_id:
                try:
                    run_status = self.ctx.launcher.terminate(run_id)
                except Exception:  # Dagster unreachable: reconciliation retries
                    log.exception("Export job %s: could not terminate run %s", ident, run_id)
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

    def run_request_for(self, job_id: int) -> RunRequest:
        """The run of this job: the destination's export asset, after the segments it reads (and the stale
        profile-store assets) when it evaluates them first."""
        store = self._store_keys(job_id)
        with self.ctx.catalog.session(readonly=True) as session:
            return self._run_request(self._row(session, job_id), store)

    def claim_for_launch(self, job_id: int) -> RunRequest | None:
        """``NEW`` -> ``PROCESSING`` with the next attempt; the run to launch (``None`` if no longer ``NEW``)."""
        store = self._store_keys(job_id)
        with self.ctx.catalog.session() as session:
            row = self._row(session, job_id, lock=True)
            if row.status != NEW:
                return None
            row.attempt = (row.attempt or 0) + 1
            internal = dict(row.body.get(_INTERNAL) or {})
            internal["queued_ms"] = now_ms()
            row.body = {**row.body, _INTERNAL: internal}
            self._set_status(session, row, PROCESSING)
            return self._run_request(row, store)

    def requeue(self, job_id: int, reason: str) -> bool:
        """A claimed job whose run never appeared goes back to ``NEW`` (relaunched with the next attempt)."""
        with self.ctx.catalog.session() as session:
            row = self._row(session, job_id, lock=True)
            if row.status != PROCESSING or row.run_id:
                return False
            log.warning("Export job %s: %s; launching it again", job_id, reason)
            self._set_status(session, row, NEW)
            return True

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
            internal = row.body.get(_INTERNAL) or {}
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
                errors = _errors(internal.get("errors") or error) if target == FAILED else None
                self._set_status(session, row, target, errors=errors)
            elif target in ("QUEUED", "PROCESSING", "CANCELLING") and row.status == NEW:
                self._set_status(session, row, PROCESSING)
            return self._doc(row)

    def run_in_process(self, job_id: int) -> dict:
        request = self.run_request_for(job_id)
        run_id = self.ctx.launcher.new_run_id()
        self.sync_with_run(job_id, "STARTED", run_id)
        try:
            status, error = self.ctx.launcher.execute(request, run_id)
        except Exception as exc:  # the run could not even start
            log.exception("Export job %s: in-process run failed to start", job_id)
            status, error = "FAILURE", {"code": ERROR_RUN_FAILED, "msg": f"{type(exc).__name__}: {exc}"}
        return self.sync_with_run(job_id, status, run_id, error=error)

    def cancel_requested(self, job_id: int) -> bool:
        with self.ctx.catalog.session(readonly=True) as session:
            row = session.get(models.ExportJob, int(job_id))
            return (
                row is None
                or row.status in TERMINAL
                or bool((row.body.get(_INTERNAL) or {}).get("cancelRequested"))
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
        """The export itself (called by the export asset): gates, then the batch(es), published atomically.

        Returns a summary for the asset's metadata. Raises :class:`ApiError` on a refused or failed export (the
        message becomes the job's error) and ``ExportCancelled`` when cancelled (nothing published).
        """
        from segmentation_pipelines.engine.export import (
            ExportCancelled,
            FieldError,
            SegmentSource,
            write_export,
        )

        cancelled = should_cancel or self.should_cancel(job_id)
        with self.ctx.catalog.session(readonly=True) as session:
            row = self._row(session, job_id)
            doc = dict(row.body)
        start = now_ms()
        segments = (doc.get("filter") or {}).get("segments") or []
        override = (doc.get("publishGates") or {}).get("override")
        refused = self._gate_errors(segments, override)
        if refused:
            self._record_errors(job_id, refused)
            raise ApiError(412, "; ".join(e["msg"] for e in refused), code=ERROR_GATE_FAILED)
        evaluations = (
            AudienceEvaluations(self.ctx).latest_for([s["segmentId"] for s in segments]) if segments else {}
        )
        missing = [s["segmentId"] for s in segments if s["segmentId"] not in evaluations]
        if missing:
            error = {
                "code": ERROR_NOT_EVALUATED,
                "msg": f"Segment(s) {', '.join(missing)} have no evaluation yet: run a segment job first, or set "
                "evaluationInfo.segmentation to true.",
            }
            self._record_errors(job_id, [error])
            raise ApiError(409, error["msg"], code=ERROR_NOT_EVALUATED)
        flt = doc.get("filter") or {}
        window = flt.get("segmentQualificationTime") or {}
        bounds = (
            _naive(parse_rfc3339(window["startTime"], "startTime")) if window.get("startTime") else None,
            _naive(parse_rfc3339(window["endTime"], "endTime")) if window.get("endTime") else None,
        )
        policy_id = (doc.get("mergePolicy") or {}).get("id")
        profiles_path = self.layout.profiles_path(policy_id)
        if not profiles_path.exists():
            raise ApiError(
                409,
                f"The profile store has no merged profiles for merge policy '{policy_id}' yet: ingest data first.",
            )
        fields = [f.strip() for f in doc["fields"].split(",")] if doc.get("fields") else None
        sources = [
            SegmentSource(
                s["segmentId"],
                evaluations[s["segmentId"]].path,
                tuple(s["status"]),
                s.get("segmentNs", "ups"),
            )
            for s in segments
        ]
        ids_path = None
        folder = doc["destination"].get("folder")
        table = doc["destination"].get("postgres")
        dataset_id = doc["destination"].get("datasetId")
        if folder:
            staging_root, fmt = Path(folder["path"]), folder.get("format", "parquet")
        elif table:  # written as CSV under the sandbox, then loaded into the table
            staging_root, fmt = self.ctx.sandbox_root / "exports", "csv"
        else:
            staging_root, fmt = self.layout.dataset_dir(dataset_id), "parquet"
        staging_root.mkdir(parents=True, exist_ok=True)
        staging = staging_root / f".export-{job_id}-{uuid.uuid4().hex[:8]}"
        plan = (
            [(s, [s]) for s in sources]
            if doc["destination"].get("segmentPerBatch") and sources
            else [(None, sources)]
        )
        events = self._events_spec((doc.get("additionalFields") or {}).get("eventList"), staging)
        try:
            if flt.get("fromIngestTimestamp"):
                ids_path = self._updated_profiles(
                    parse_rfc3339(flt["fromIngestTimestamp"], "fromIngestTimestamp"), staging
                )
            written = []
            for seg, batch_sources in plan:
                batch_id = uuid.uuid4().hex
                result = write_export(
                    profiles_path=profiles_path,
                    sources=batch_sources,
                    out_dir=staging / batch_id,
                    fmt=fmt,
                    fields=fields,
                    window=bounds,
                    empty_profiles=bool(flt.get("emptyProfiles")),
                    profile_ids_path=ids_path,
                    all_profiles=not segments,
                    events=events,
                    memory_limit=MEMORY_LIMIT,
                    temp_directory=staging / "spill",
                    should_cancel=cancelled,
                )
                written.append((seg, batch_id, result))
                if progress:
                    progress(batch_id, result)
            end = now_ms()
            if cancelled():
                raise ExportCancelled()
            if table:
                return self._publish_table(job_id, table, written, evaluations, start, end)
            return self._publish(job_id, dataset_id, staging, written, evaluations, start, end, folder)
        except FieldError as exc:
            error = {"code": "SEGP-EXPORT-400", "msg": f"fields: {exc}."}
            self._record_errors(job_id, [error])
            raise ApiError(400, error["msg"], code=error["code"]) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # --- internals ---------------------------------------------------------------------------------------------

    def _publish(
        self, job_id, dataset_id, staging: Path, written, evaluations, start, end, folder=None
    ) -> dict:
        """Rename the batch folders into the dataset and record the batches and the job's outcome in one
        transaction, unless the job was cancelled meanwhile (then the folders are removed: nothing published)."""
        from segmentation_pipelines.engine.export import ExportCancelled

        moved: list[Path] = []
        total = sum(r.rows for _, _, r in written)
        by_namespace: dict[str, int] = {}
        for _, _, r in written:
            for ns, n in r.by_namespace.items():
                by_namespace[ns] = by_namespace.get(ns, 0) + n
        try:
            with self.ctx.catalog.session() as session:
                row = self._row(session, job_id, lock=True)
                internal = dict(row.body.get(_INTERNAL) or {})
                if internal.get("cancelRequested") or row.status in TERMINAL:
                    raise ExportCancelled()
                batches_doc = []
                for seg, batch_id, result in written:
                    if folder:  # extension: a folder of files, no dataset
                        final = Path(folder["path"]) / f"export-{job_id}-{batch_id}"
                    else:
                        final = self.layout.batch_dir(dataset_id, batch_id)
                    shutil.rmtree(staging / batch_id / "spill", ignore_errors=True)
                    staging.joinpath(batch_id).rename(final)
                    moved.append(final)
                    files = [str(final / f.name) for f in result.files]
                    if folder:
                        batches_doc.append(
                            {
                                "segmentId": seg.segment_id if seg else None,
                                "batchId": batch_id,
                                "files": files,
                            }
                        )
                        continue
                    now = now_ms()
                    body = {
                        "id": batch_id,
                        "status": "success",
                        "relatedObjects": [{"type": "dataSet", "id": dataset_id}],
                        "imsOrg": self.ctx.org_id,
                        "created": now,
                        "updated": now,
                        "completed": now,
                        "inputFormat": {"format": "parquet"},
                        "files": files,
                        "rowCount": result.rows,
                        "metrics": {"outputRecordCount": result.rows},
                        # An export's output: the profile store never reads it back as profile data.
                        "exportJobId": job_id,
                        "segmentId": seg.segment_id if seg else None,
                    }
                    session.add(
                        models.Batch(
                            id=batch_id,
                            org_id=self.ctx.org_id,
                            sandbox=self.ctx.sandbox,
                            dataset_id=dataset_id,
                            status="success",
                            content_hash=None,
                            row_count=result.rows,
                            rejected_count=0,
                            body=body,
                            created_ms=now,
                            updated_ms=now,
                        )
                    )
                    if seg is not None:
                        batches_doc.append(
                            {
                                "segmentId": seg.segment_id,
                                "segmentNs": seg.namespace,
                                "status": list(seg.statuses),
                                "batchId": batch_id,
                            }
                        )
                body = dict(row.body)
                destination = dict(body["destination"])
                if folder:
                    destination["batchId"] = written[0][1]
                    destination["files"] = [f for b in batches_doc for f in b["files"]]
                    if len(batches_doc) > 1 or batches_doc[0]["segmentId"]:
                        destination["batches"] = batches_doc
                elif batches_doc:
                    destination["batches"] = batches_doc
                else:
                    destination["batchId"] = written[0][1]
                metrics = dict(body.get("metrics") or {})
                metrics.update(
                    profileExportTime={
                        "startTimeInMs": start,
                        "endTimeInMs": end,
                        "totalTimeInMs": end - start,
                    },
                    totalExportedProfileCounter=total,
                    exportedProfileByNamespaceCounter=by_namespace,
                )
                internal["published"] = now_ms()
                body.update(destination=destination, metrics=metrics, _internal=internal)
                # Extension: which evaluation of each segment was exported (the delta recipe starts after it).
                body["segmentEvaluations"] = [
                    {"segmentId": a, "evaluationTime": iso(e.evaluation_time)} for a, e in evaluations.items()
                ]
                row.body = body
                self._touch(session, row)
                summary = {
                    "rows": total,
                    "by_namespace": by_namespace,
                    "batches": [b for _, b, _ in written],
                    "files": [str(p) for p in moved],
                }
        except BaseException:
            for path in moved:
                shutil.rmtree(path, ignore_errors=True)
            raise
        return summary

    def _publish_table(self, job_id, table: Mapping, written, evaluations, start, end) -> dict:
        """Extension: replace the PostgreSQL table with this export (one transaction there), unless cancelled."""
        from segmentation_pipelines.engine.export import ExportCancelled
        from segmentation_pipelines.engine.export_postgres import replace_table

        if len(written) != 1:
            raise ApiError(400, "destination.postgres: segmentPerBatch is not supported for a table.")
        _, batch_id, result = written[0]
        (csv_path,) = result.files
        url = table.get("url") or self.ctx.settings.export_pg_url
        with self.ctx.catalog.session() as session:
            row = self._row(session, job_id, lock=True)
            internal = dict(row.body.get(_INTERNAL) or {})
            if internal.get("cancelRequested") or row.status in TERMINAL:
                raise ExportCancelled()
            rows = replace_table(url, table.get("schema", "public"), table["table"], result.columns, csv_path)
            body = dict(row.body)
            destination = {**body["destination"], "batchId": batch_id, "rowCount": rows}
            metrics = dict(body.get("metrics") or {})
            metrics.update(
                profileExportTime={"startTimeInMs": start, "endTimeInMs": end, "totalTimeInMs": end - start},
                totalExportedProfileCounter=result.rows,
                exportedProfileByNamespaceCounter=result.by_namespace,
            )
            internal["published"] = now_ms()
            body.update(destination=destination, metrics=metrics, _internal=internal)
            body["segmentEvaluations"] = [
                {"segmentId": a, "evaluationTime": iso(e.evaluation_time)} for a, e in evaluations.items()
            ]
            row.body = body
            self._touch(session, row)
        return {"rows": result.rows, "by_namespace": result.by_namespace, "batches": [batch_id], "files": []}

    def _updated_profiles(self, after: datetime, staging: Path) -> Path:
        """Parquet of the profile ids having a profile fragment in a batch ingested after ``after``."""
        from segmentation_pipelines.duck import connect, sql_str
        from segmentation_pipelines.service.datasets import DatasetsService

        after_ms = int(after.timestamp() * 1000)
        refs = [
            b for b in DatasetsService(self.ctx).successful_batches()["profile"] if b.ingested_ms > after_ms
        ]
        staging.mkdir(parents=True, exist_ok=True)
        out = staging / "updated_profiles.parquet"
        files = [str(p) for b in refs for p in self.layout.batch_files(b.dataset_id, b.batch_id)]
        con = connect(staging / "spill", "1GB")
        try:
            if not files:
                con.execute(
                    f"COPY (SELECT NULL::VARCHAR AS profile_id WHERE false) TO {sql_str(out)} (FORMAT parquet)"
                )
                return out
            listing = "[" + ", ".join(sql_str(f) for f in files) + "]"
            con.execute(
                f"""COPY (SELECT DISTINCT i.profile_id FROM (
                        SELECT e.key AS namespace, unnest(e.value).id AS id
                        FROM (SELECT unnest(identityMap) AS e FROM read_parquet({listing}, union_by_name = true)))
                    f JOIN read_parquet({sql_str(self.layout.identities_path())}) i
                    ON i.namespace = f.namespace AND i.id = f.id) TO {sql_str(out)} (FORMAT parquet)"""
            )
        finally:
            con.close()
        return out

    def _gate_errors(self, segments: list[dict], override: Any) -> list[dict]:
        gates = PublishGates(self.ctx)
        errors = []
        for seg in segments:
            for result in gates.status(seg["segmentId"]):
                overridden = override is True or (isinstance(override, list) and result.check in override)
                if not result.passed and not overridden:
                    errors.append(
                        {
                            "code": ERROR_GATE_FAILED,
                            "msg": f"Publish gate {result.check} failed for segment {seg['segmentId']}: "
                            f"{result.description} Override it with publishGates.override.",
                            "check": result.check,
                            "segmentId": seg["segmentId"],
                        }
                    )
        return errors

    def _record_errors(self, job_id: int, errors: list[dict]) -> None:
        with self.ctx.catalog.session() as session:
            row = self._row(session, job_id, lock=True)
            internal = dict(row.body.get(_INTERNAL) or {})
            internal["errors"] = errors
            row.body = {**row.body, _INTERNAL: internal}
            self._touch(session, row)

    def _store_keys(self, job_id: int) -> list[list[str]]:
        """The stale profile-store assets a run refreshes before it evaluates (only when it evaluates). Read
        before the job row is locked: it opens its own catalog session."""
        with self.ctx.catalog.session(readonly=True) as session:
            doc = self._row(session, job_id).body
        if not (
            (doc.get("evaluationInfo") or {}).get("segmentation")
            and (doc.get("filter") or {}).get("segments")
        ):
            return []
        from segmentation_pipelines.service.profile_store import ProfileStoreService

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

    def _destination_known(self, session, request: dict) -> bool:
        dataset = destination_key(request["destination"])
        wanted = {s["segmentId"] for s in (request.get("filter") or {}).get("segments") or []}
        seen: set[str] = set()
        m = models.ExportJob
        found = False
        for body in session.scalars(
            select(m.body).where(m.org_id == self.ctx.org_id, m.sandbox == self.ctx.sandbox)
        ):
            if destination_key(body.get("destination") or {}) == dataset:
                found = True
                seen.update(s.get("segmentId") for s in (body.get("filter") or {}).get("segments") or [])
        return found and wanted <= seen

    def _row(self, session, job_id: int, lock: bool = False) -> models.ExportJob:
        row = self.ctx.repo(session, models.ExportJob).get(int(job_id), for_update=lock)
        if row is None:
            raise NotFound("Export job", str(job_id))
        return row

    def _touch(self, session, row) -> None:
        row.updated_ms = now_ms()
        session.flush()

    def _set_status(self, session, row, status: str, errors: list | None = None) -> None:
        body = dict(row.body)
        body["status"] = status
        if status in TERMINAL:
            metrics = dict(body.get("metrics") or {})
            total = dict(metrics.get("totalTime") or {})
            begin = int(total.get("startTimeInMs") or row.created_ms)
            end = now_ms()
            metrics["totalTime"] = {"startTimeInMs": begin, "endTimeInMs": end, "totalTimeInMs": end - begin}
            metrics.setdefault("profileExportTime", {})
            body["metrics"] = metrics
        if errors:
            body["errors"] = errors
        row.body = body
        row.status = status
        self._touch(session, row)

    def _find_run_id(self, job_id: int) -> str | None:
        try:
            run = self.ctx.launcher.find_run(str(job_id))
            return run.run_id if run else None
        except Exception:
            log.exception("Export job %s: could not look its run up", job_id)
            return None

    def _doc(self, row: models.ExportJob) -> dict:
        doc = {k: v for k, v in row.body.items() if k != _INTERNAL}
        doc["id"] = row.id
        doc["status"] = row.status
        if row.run_id:
            doc["computeGatewayJobId"] = {"exportJob": row.run_id}  # the Dagster run
        doc["creationTime"] = row.created_ms
        doc["updateTime"] = row.updated_ms
        return doc

    def _events_spec(self, spec: Mapping | None, staging: Path):
        """The events relation of ``additionalFields.eventList``: the store's events, or (with an ingestion-time
        window) the event batches ingested in it, keyed to profiles as the store keys them."""
        from segmentation_pipelines.duck import sql_str
        from segmentation_pipelines.engine.export import EventsSpec
        from segmentation_pipelines.profiles.events_store import EMPTY_EVENTS, _keyed_sql
        from segmentation_pipelines.service.datasets import DatasetsService

        if spec is None:
            return None
        fields = tuple(f.strip() for f in spec["fields"].split(",")) if spec.get("fields") else None
        window = spec.get("filter") or {}
        if not window:
            if not list(self.layout.events_dir().glob("current/*.parquet")):
                return EventsSpec(f"({EMPTY_EVENTS})", None)
            return EventsSpec(
                f"read_parquet({sql_str(self.layout.events_path())}, union_by_name = true)", fields
            )
        low = window.get("fromIngestTimestamp")
        high = window.get("toIngestTimestamp")
        low_ms = int(parse_rfc3339(low, "fromIngestTimestamp").timestamp() * 1000) if low else None
        high_ms = int(parse_rfc3339(high, "toIngestTimestamp").timestamp() * 1000) if high else None
        refs = [
            b
            for b in DatasetsService(self.ctx).successful_batches()["experienceevent"]
            if (low_ms is None or b.ingested_ms > low_ms) and (high_ms is None or b.ingested_ms <= high_ms)
        ]
        files = [str(p) for b in refs for p in self.layout.batch_files(b.dataset_id, b.batch_id)]
        if not files:
            return EventsSpec(f"({EMPTY_EVENTS})", None)
        listing = "[" + ", ".join(sql_str(f) for f in files) + "]"
        relation = _keyed_sql(
            f"read_parquet({listing}, union_by_name = true)", str(self.layout.identities_path())
        )
        return EventsSpec(f"({relation})", fields)


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


def _errors(error: Any) -> list[dict]:
    if error is None:
        return [{"code": ERROR_RUN_FAILED, "msg": "The Dagster run of this export job failed."}]
    if isinstance(error, str):
        return [{"code": ERROR_RUN_FAILED, "msg": error}]
    if isinstance(error, Mapping):
        return [
            {
                "code": str(error.get("code") or ERROR_RUN_FAILED),
                **{k: v for k, v in error.items() if k != "code"},
            }
        ]
    return [e for item in error for e in _errors(item)]
