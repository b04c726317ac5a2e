"""Segment jobs (``/segment/jobs``): requests to evaluate a set of segment definitions at one evaluation time.

A job row is the AEP ``SegmentJob`` document plus the columns that drive it (``status``, ``attempt``, ``run_id``,
``evaluation_ms``). Its life:

* ``create`` writes it ``NEW``; the ``segment_job_launcher`` sensor turns it into a Dagster run (run key
  ``"<job id>:<attempt>"``) and marks it ``QUEUED``. ``launch=False`` (a schedule tick launching the run itself)
  records it ``QUEUED`` at once; ``wait=True`` runs it in this process through Dagster and returns it finished.
* The run's status is written back by ``sync_with_run`` (run-status sensors, the reconciliation pass, the
  in-process launcher): ``STARTED`` -> ``PROCESSING``, ``SUCCESS`` -> ``SUCCEEDED``, ``FAILURE`` -> ``FAILED``
  (with ``errors``), ``CANCELED`` -> ``CANCELLED``. Terminal statuses never change again, so a late or repeated
  event is harmless.
* ``delete`` cancels: ``NEW`` -> ``CANCELLED``; a job with a run -> ``CANCELLING``, the run is terminated, and the
  evaluation polls :meth:`SegmentJobsService.cancel_requested` so it stops within seconds.
* The evaluation op calls ``record_evaluation`` with its summary: that fills ``metrics``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import object_session

from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.errors import BadRequest, Conflict, NotFound
from segmentation_pipelines.launcher import (
    ERROR_RUN_FAILED,
    KIND_SEGMENT_JOB,
    PARTITION_START,
    RUN_STATUS_TO_REQUEST,
    SEGMENT_JOB,
    TAG_EVALUATION_TIME,
    RunRequest,
    definition_asset_key,
    evaluation_partition,
    partition_evaluation_time,
    run_status_name,
)
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.query import int_param
from segmentation_pipelines.timeutil import from_ms, iso_ms, parse_time, to_ms

log = logging.getLogger(__name__)

KIND = KIND_SEGMENT_JOB
JOB_NAME = SEGMENT_JOB

NEW, QUEUED, PROCESSING, CANCELLING = "NEW", "QUEUED", "PROCESSING", "CANCELLING"
SUCCEEDED, FAILED, CANCELLED = "SUCCEEDED", "FAILED", "CANCELLED"
STATUSES = (NEW, QUEUED, PROCESSING, CANCELLING, CANCELLED, FAILED, SUCCEEDED)
ACTIVE = frozenset({NEW, QUEUED, PROCESSING, CANCELLING})
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
# Order of the non-terminal statuses: a job never moves back (a late QUEUED event after STARTED is ignored).
_RANK = {NEW: 0, QUEUED: 1, PROCESSING: 2, CANCELLING: 3}

SCHEMA_NAME = "_xdm.context.profile"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_BULK_IDS = 100
SORTABLE = {"creationTime", "updateTime", "status", "id", "evaluationTime"}
_INTERNAL = "_internal"  # stored in the row's body, never returned
DAY_MS = 86_400_000


def check_evaluation_day(evaluation_ms: int) -> None:
    """Evaluations are Dagster partitions by evaluation day (``launcher.evaluation_partition``): the time must fall
    in a day that exists, from the first one to today (UTC)."""
    first = to_ms(partition_evaluation_time(PARTITION_START)) - DAY_MS
    last = to_ms(partition_evaluation_time(from_ms(now_ms()).strftime("%Y-%m-%d")))
    if evaluation_ms <= first:
        raise BadRequest(
            f"evaluation_time: must be after {PARTITION_START}T00:00:00Z (the first evaluation day)."
        )
    if evaluation_ms > last:
        raise BadRequest(f"evaluation_time: must not be later than {iso_ms(last)} (the end of today, UTC).")


def _field(obj: Any, name: str, default: Any = None) -> Any:
    """``obj.name`` or ``obj[name]``: the evaluation summary may be a dataclass or a dict."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def jobs_in_status(catalog, statuses: Iterable[str], limit: int | None = None) -> list[tuple[str, str, str]]:
    """``(org, sandbox, job id)`` of every job in ``statuses``, oldest first, across sandboxes (for the sensors)."""
    m = models.SegmentJob
    query = select(m.org_id, m.sandbox, m.id).where(m.status.in_(list(statuses))).order_by(m.created_ms, m.id)
    if limit is not None:
        query = query.limit(limit)
    with catalog.session(readonly=True) as session:
        return [tuple(row) for row in session.execute(query)]


class SegmentJobsService:
    """``/segment/jobs`` in one (org, sandbox); see the module docstring for the life of a job."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    # --- REST operations ---------------------------------------------------------------------------------------

    def create(
        self,
        body: Any,
        *,
        evaluation_time: Any = None,
        wait: bool = False,
        source: str = "api",
        properties: Mapping[str, Any] | None = None,
        job_id: str | None = None,
        launch: bool = True,
    ) -> dict:
        """Create a job for ``[{"segmentId": ...}]`` (``"*"`` = every batch definition of the sandbox).

        ``launch=False``: the caller launches the run itself with :meth:`run_request_for` (the launcher sensor skips
        the job). ``wait=True``: run it now in this process through Dagster and return the finished job.
        """
        if source not in ("api", "scheduler"):
            raise BadRequest(f"source: '{source}' is not one of 'api', 'scheduler'.")
        if wait and not launch:
            raise BadRequest(
                "wait=True runs the job in this process; it cannot be combined with launch=False."
            )
        evaluation_ms = None if evaluation_time is None else to_ms(parse_time(evaluation_time))
        segments = self._resolve_segments(body)
        if evaluation_ms is not None:
            check_evaluation_day(evaluation_ms)
        now = now_ms()
        mode = "in_process" if wait else ("sensor" if launch else "caller")
        status = NEW if mode == "sensor" else QUEUED
        attempt = 0 if mode == "sensor" else 1
        doc: dict[str, Any] = {
            "imsOrgId": self.ctx.org_id,
            "sandbox": self.ctx.sandbox_doc(),
            "profileInstanceId": "ups",
            "source": source,
            "status": status,
            "segments": segments,
            "metrics": {"totalTime": {"startTimeInMs": now}, "profileSegmentationTime": {}},
            "requestId": self.ctx.request_id,
            "schema": {"name": SCHEMA_NAME},
            "properties": dict(properties or {}),
            _INTERNAL: {"launch": mode},
        }
        if self.ctx.request_id is None:
            doc.pop("requestId")
        with self.ctx.catalog.session() as session:
            repo = self.ctx.repo(session, models.SegmentJob)
            if job_id is not None and session.get(models.SegmentJob, job_id) is not None:
                raise Conflict(f"A segment job with id '{job_id}' already exists.")
            columns = {"id": job_id} if job_id else {}
            row = repo.add(
                status=status,
                attempt=attempt,
                evaluation_ms=evaluation_ms,
                body=doc,
                created_ms=now,
                **columns,
            )
            job_id = row.id
        if wait:
            return self.run_in_process(job_id)
        return self.get(job_id)

    def get(self, job_id: str) -> dict:
        """The job; an active one whose run has ended is settled first (no wait for a sensor to notice)."""
        with self.ctx.catalog.session(readonly=True) as session:
            row = self._row(session, job_id)
            doc, run_id = self._doc(row), row.run_id
        if doc["status"] in (QUEUED, PROCESSING, CANCELLING) and run_id:
            run = self.ctx.launcher.find_run(job_id, run_id)
            if run is not None and run.finished:
                errors = self.ctx.launcher.errors(run_id) if run.status == "FAILURE" else None
                return self.sync_with_run(job_id, run.status, run_id, error=errors)
        return doc

    def list(self, **query: Any) -> dict:
        start = int_param(query, "start", 0)
        limit = int_param(query, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        status = query.get("status")
        filters = [_parse_property(p) for p in _as_list(query.get("property"))]
        sort_field, descending = _parse_sort(query.get("sort") or "creationTime:desc")
        m = models.SegmentJob
        where = []
        if status:
            wanted = [s.strip().upper() for s in str(status).split(",") if s.strip()]
            unknown = [s for s in wanted if s not in STATUSES]
            if unknown:
                raise BadRequest(f"status: '{unknown[0]}' is not one of {', '.join(STATUSES)}.")
            where.append(m.status.in_(wanted))
        with self.ctx.catalog.session(readonly=True) as session:
            docs = [
                self._doc(row)
                for row in self.ctx.repo(session, m).find(*where, order_by=[m.created_ms, m.id])
            ]
        docs = [d for d in docs if all(f(d) for f in filters)]
        docs.sort(key=lambda d: (_sort_value(d.get(sort_field)), d["id"]), reverse=descending)
        page = docs[start : start + limit]
        result: dict[str, Any] = {"_page": {"totalCount": len(docs), "pageSize": len(page)}, "children": page}
        links: dict[str, Any] = {}
        if start + limit < len(docs):
            params = {k: v for k, v in query.items() if k not in ("start", "limit") and v is not None}
            extra = "".join(f"&{k}={v}" for k, values in params.items() for v in _as_list(values))
            links["next"] = {"href": f"/segment/jobs?start={start + limit}&limit={limit}{extra}"}
        result["_links"] = links
        return result

    def delete(self, job_id: str) -> dict:
        """Cancel: ``NEW`` -> ``CANCELLED``; ``QUEUED``/``PROCESSING`` -> ``CANCELLING`` and the run is terminated."""
        with self.ctx.catalog.session() as session:
            row = self._row(session, job_id, lock=True)
            if row.status in (SUCCEEDED, FAILED):
                raise Conflict(f"Segment job '{job_id}' has already ended with status {row.status}.")
            status, run_id = row.status, row.run_id
            if status == NEW:
                self._set_status(session, row, CANCELLED)
        if status in (QUEUED, PROCESSING):
            # Dagster first: the evaluation stops as soon as it sees the job CANCELLING, and its run must already
            # be CANCELING then, or Dagster would record the stop as a failure rather than a cancellation.
            run_id = run_id or self._find_run_id(job_id)
            run_status = self._terminate(job_id, run_id) if run_id else None
            with self.ctx.catalog.session() as session:
                row = self._row(session, job_id, lock=True)
                if row.status in (QUEUED, PROCESSING):
                    self._set_status(session, row, CANCELLING)
            if run_status in ("CANCELED", "FAILURE", "SUCCESS"):  # e.g. a run still in Dagster's queue
                self.sync_with_run(job_id, run_status, run_id)
        return {"status": True, "message": f"Segment job with id '{job_id}' has been marked for cancelling"}

    def bulk_get(self, body: Any) -> dict:
        ids = _bulk_ids(body)
        results: dict[str, Any] = {}
        with self.ctx.catalog.session(readonly=True) as session:
            for ident in ids:
                row = self.ctx.repo(session, models.SegmentJob).get(ident)
                if row is None:
                    results[ident] = {
                        "id": ident,
                        "errors": [
                            {"code": "UPAPI-113000-404", "msg": f"Segment job '{ident}' was not found."}
                        ],
                    }
                else:
                    results[ident] = self._doc(row)
        return {"results": results}

    # --- Dagster side ------------------------------------------------------------------------------------------

    def run_request_for(self, job_id: str) -> RunRequest:
        """What a run of this job is: its definitions' assets, after the profile-store assets that are stale
        (so a job never evaluates a stale store), and the job's tags.

        Fixes the evaluation time (now) if the job has none yet, so every run of the job evaluates at one time.
        """
        store = self._store_selection()
        with self.ctx.catalog.session() as session:
            row = self._row(session, job_id, lock=True)
            if row.evaluation_ms is None:
                row.evaluation_ms = now_ms()
                self._touch(session, row)
            return self._run_request(row, store)

    def claim_for_launch(self, job_id: str) -> RunRequest | None:
        """``NEW`` -> ``QUEUED`` with the next attempt; the run request to launch (``None`` if no longer ``NEW``)."""
        store = self._store_selection()
        with self.ctx.catalog.session() as session:
            row = self._row(session, job_id, lock=True)
            if row.status != NEW:
                return None
            row.attempt = (row.attempt or 0) + 1
            if row.evaluation_ms is None:
                row.evaluation_ms = now_ms()
            internal = dict(row.body.get(_INTERNAL) or {})
            internal["queued_ms"] = now_ms()
            row.body = {**row.body, _INTERNAL: internal}
            self._set_status(session, row, QUEUED)
            return self._run_request(row, store)

    def requeue(self, job_id: str, reason: str) -> bool:
        """A ``QUEUED`` job whose run never appeared goes back to ``NEW`` (the launcher retries with a new key)."""
        with self.ctx.catalog.session() as session:
            row = self._row(session, job_id, lock=True)
            if row.status != QUEUED or row.run_id:
                return False
            log.warning("Segment job %s: %s; launching it again", job_id, reason)
            internal = dict(row.body.get(_INTERNAL) or {})
            internal["launch"] = "sensor"
            row.body = {**row.body, _INTERNAL: internal}
            self._set_status(session, row, NEW)
            return True

    def sync_with_run(self, job_id: str, run_status: Any, run_id: str | None, error: Any = None) -> dict:
        """Write a Dagster run's status onto its job (idempotent; terminal jobs never change).

        ``error``: a message, an ``{code, msg, callStack}`` dict or a list of them (kept on ``FAILED`` jobs).
        """
        target = RUN_STATUS_TO_REQUEST.get(run_status_name(run_status))
        with self.ctx.catalog.session() as session:
            row = self._row(session, job_id, lock=True)
            if row.run_id and run_id and row.run_id != run_id:
                log.info("Segment job %s: ignoring run %s (the job's run is %s)", job_id, run_id, row.run_id)
                return self._doc(row)
            if row.run_id is None and run_id:
                row.run_id = run_id
                self._touch(session, row)
            if target is None or row.status in TERMINAL:
                return self._doc(row)
            if row.status == CANCELLING and target in (FAILED, CANCELLED):
                # A cancelled evaluation stops by raising: the run may end FAILURE, the job was still cancelled.
                target = CANCELLED
            if target in TERMINAL:
                self._set_status(session, row, target, errors=_errors(error) if target == FAILED else None)
            elif _RANK[target] > _RANK.get(row.status, 0):
                self._set_status(session, row, target)
            return self._doc(row)

    def record_evaluation(self, job_id: str, summary: Any) -> dict:
        """Fill ``metrics`` from ``run_evaluation``'s summary (per-audience counts, profiles, phase times)."""
        audiences = _field(summary, "audiences") or {}
        counter, by_namespace, by_status = {}, {}, {}
        for audience_id, counts in dict(audiences).items():
            realized = int(_field(counts, "realized", 0) or 0)
            existing = int(_field(counts, "existing", 0) or 0)
            exited = int(_field(counts, "exited", 0) or 0)
            members = _field(counts, "members")
            counter[audience_id] = int(realized + existing if members is None else members)
            by_namespace[audience_id] = {
                str(k): int(v) for k, v in dict(_field(counts, "by_namespace") or {}).items()
            }
            by_status[audience_id] = {"realized": realized, "existing": existing, "exited": exited}
        start = _field(summary, "segmentation_start_ms")
        end = _field(summary, "segmentation_end_ms")
        phase = {}
        if start is not None and end is not None:
            phase = {
                "startTimeInMs": int(start),
                "endTimeInMs": int(end),
                "totalTimeInMs": int(end) - int(start),
            }
        by_policy = {
            str(k): int(v) for k, v in dict(_field(summary, "total_profiles_by_merge_policy") or {}).items()
        }
        total = _field(summary, "total_profiles")
        with self.ctx.catalog.session() as session:
            row = self._row(session, job_id, lock=True)
            metrics = dict(row.body.get("metrics") or {})
            metrics.update(
                profileSegmentationTime=phase,
                totalProfiles=int(total if total is not None else sum(by_policy.values())),
                totalProfilesByMergePolicy=by_policy,
                segmentedProfileCounter=counter,
                segmentedProfileByNamespaceCounter=by_namespace,
                segmentedProfileByStatusCounter=by_status,
            )
            body = {**row.body, "metrics": metrics}
            failed = dict(_field(summary, "failed") or {})
            # The job still succeeds for the others; each definition left out is an error of the job.
            if failed:
                metrics["failedSegmentCounter"] = len(failed)
                body["errors"] = [
                    {"code": str(f.get("code")), "msg": str(f.get("message")), "segmentId": ident}
                    for ident, f in sorted(failed.items())
                ]
            store = _field(summary, "store_version")
            if store:
                body["profileStore"] = {"version": store}  # extension: the store version it evaluated
            row.body = body
            self._touch(session, row)
            return self._doc(row)

    def cancel_requested(self, job_id: str) -> bool:
        """True once the evaluation must stop: the job is being cancelled, or has already ended (e.g. marked
        ``FAILED`` because its run worker died while a step process kept going), so it must publish nothing."""
        with self.ctx.catalog.session(readonly=True) as session:
            row = session.get(models.SegmentJob, job_id)
            return row is None or row.status not in (NEW, QUEUED, PROCESSING)

    def should_cancel(
        self, job_id: str | None, run_id: str | None = None, min_interval_s: float = 0.5
    ) -> Callable[[], bool]:
        """A cheap ``should_cancel()`` for ``run_evaluation``: reads the catalog at most every ``min_interval_s``.

        With ``run_id`` (the evaluating run), a cancel it notices also marks that run ``CANCELING`` in Dagster, so
        the run ends ``CANCELED`` (not ``FAILURE``) even when the cancel arrived before the run existed.
        """
        if job_id is None:
            return lambda: False
        state = {"at": 0.0, "value": False}

        def check() -> bool:
            if not state["value"] and time.monotonic() - state["at"] >= min_interval_s:
                state["at"] = time.monotonic()
                state["value"] = self.cancel_requested(job_id)
                if state["value"] and run_id:
                    self.ctx.launcher.mark_canceling(run_id)
            return state["value"]

        return check

    def definition_ids(self, job_id: str) -> list[str]:
        with self.ctx.catalog.session(readonly=True) as session:
            return [s["segmentId"] for s in self._row(session, job_id).body.get("segments") or []]

    def run_in_process(self, job_id: str) -> dict:
        """Run the job's evaluation (after refreshing a stale profile store) in this process through Dagster;
        the finished job."""
        request = self.run_request_for(job_id)
        run_id = self.ctx.launcher.new_run_id()
        self.sync_with_run(job_id, "STARTED", run_id)
        try:
            status, error = self.ctx.launcher.execute(request, run_id)
        except Exception as exc:  # the run could not even start (definitions failed to load...)
            log.exception("Segment job %s: in-process run failed to start", job_id)
            status, error = "FAILURE", {"code": ERROR_RUN_FAILED, "msg": f"{type(exc).__name__}: {exc}"}
        return self.sync_with_run(job_id, status, run_id, error=error)

    # --- internals ---------------------------------------------------------------------------------------------

    def _row(self, session, job_id: str, lock: bool = False) -> models.SegmentJob:
        """The job row; ``lock=True`` (every read-modify-write) holds it until commit, so a cancel and a launch
        racing on PostgreSQL cannot both win (SQLite's BEGIN IMMEDIATE already serializes writers)."""
        row = self.ctx.repo(session, models.SegmentJob).get(job_id, for_update=lock)
        if row is None:
            raise NotFound("Segment job", job_id)
        return row

    def _store_selection(self) -> list[list[str]]:
        """The profile-store assets a run must refresh before it evaluates (stale ones and what they feed)."""
        from segmentation_pipelines.service.profile_store import ProfileStoreService

        return ProfileStoreService(self.ctx).refresh_selection()

    def definition_keys(self, job_id: str) -> dict[str, list[str]]:
        """Definition id -> its asset key (kept from its creation), for the definitions of a job."""
        with self.ctx.catalog.session(readonly=True) as session:
            return self._definition_keys(session, self.definition_ids(job_id))

    def _definition_keys(self, session, ids: list[str]) -> dict[str, list[str]]:
        m = models.SegmentDefinition
        rows = session.execute(
            select(m.id, m.body).where(
                m.org_id == self.ctx.org_id, m.sandbox == self.ctx.sandbox, m.id.in_(ids)
            )
        )
        bodies = dict(rows.all())
        return {i: definition_asset_key({**(bodies.get(i) or {}), "id": i}) for i in ids}

    def _run_request(self, row: models.SegmentJob, store: list[list[str]]) -> RunRequest:
        ids = [s["segmentId"] for s in row.body.get("segments") or []]
        keys = self._definition_keys(object_session(row), ids)
        return RunRequest(
            kind=KIND,
            request_id=row.id,
            attempt=max(int(row.attempt or 0), 1),
            job_name=JOB_NAME,
            asset_selection=tuple(tuple(k) for k in [*store, *(keys[i] for i in ids)]),
            org=row.org_id,
            sandbox=row.sandbox,
            tags={TAG_EVALUATION_TIME: iso_ms(row.evaluation_ms)},
            partition_key=evaluation_partition(from_ms(row.evaluation_ms)),
        )

    def _touch(self, session, row: models.SegmentJob) -> None:
        row.updated_ms = now_ms()
        session.flush()

    def _set_status(self, session, row: models.SegmentJob, status: str, errors: list | None = None) -> None:
        body = dict(row.body)
        body["status"] = status
        if status in TERMINAL:
            metrics = dict(body.get("metrics") or {})
            total = dict(metrics.get("totalTime") or {})
            start = int(total.get("startTimeInMs") or row.created_ms)
            end = now_ms()
            metrics["totalTime"] = {"startTimeInMs": start, "endTimeInMs": end, "totalTimeInMs": end - start}
            metrics.setdefault("profileSegmentationTime", {})
            body["metrics"] = metrics
        if errors:
            body["errors"] = errors
        row.body = body
        row.status = status
        self._touch(session, row)

    def _find_run_id(self, job_id: str) -> str | None:
        try:
            run = self.ctx.launcher.find_run(job_id)
            return run.run_id if run else None
        except Exception:  # Dagster unreachable: the reconciliation pass finds the run later
            log.exception("Segment job %s: could not look its run up", job_id)
            return None

    def _terminate(self, job_id: str, run_id: str) -> str | None:
        """Ask Dagster to terminate the run; the run's status afterwards (``None`` if unknown)."""
        try:
            return self.ctx.launcher.terminate(run_id)
        except Exception:  # Dagster unreachable: the reconciliation pass retries the termination
            log.exception("Segment job %s: could not terminate run %s", job_id, run_id)
            return None

    def _doc(self, row: models.SegmentJob) -> dict:
        doc = {k: v for k, v in row.body.items() if k != _INTERNAL}
        doc["id"] = row.id
        doc["status"] = row.status
        if row.run_id:
            doc["computeGatewayJobId"] = (
                row.run_id
            )  # the Dagster run (AEP: the id to look the compute job up by)
        if row.evaluation_ms is not None:
            doc["evaluationTime"] = iso_ms(row.evaluation_ms)
        doc["creationTime"] = row.created_ms
        doc["updateTime"] = row.updated_ms
        doc["updateEpoch"] = row.updated_ms // 1000
        href = f"/segment/jobs/{row.id}"
        doc["_links"] = {
            "cancel": {"href": href, "method": "DELETE"},
            "checkStatus": {"href": href, "method": "GET"},
        }
        return doc

    def _resolve_segments(self, body: Any) -> list[dict]:
        """The job's ``segments``: each requested definition with its expression and merge policy."""
        items = body.get("segments") if isinstance(body, Mapping) else body
        where = "segments" if isinstance(body, Mapping) else "body"
        if not isinstance(items, list) or not items:
            raise BadRequest(
                f'{where}: expected a non-empty JSON array of {{"segmentId": "<definition id>"}}.'
            )
        wanted: list[str] = []
        for i, item in enumerate(items):
            ident = item.get("segmentId") if isinstance(item, Mapping) else None
            if not isinstance(ident, str) or not ident.strip():
                raise BadRequest(f'{where}[{i}].segmentId: expected a segment definition id (or "*").')
            if ident not in wanted:
                wanted.append(ident.strip())
        m = models.SegmentDefinition
        with self.ctx.catalog.session(readonly=True) as session:
            repo = self.ctx.repo(session, m)
            if "*" in wanted:
                rows = [
                    r
                    for r in repo.find(m.batch_enabled.is_(True), order_by=[m.created_ms, m.id])
                    if batch_evaluated(r)
                ]
                if not rows:
                    raise BadRequest(
                        f'{where}: "*" selects every batch segment definition, and this sandbox has none.'
                    )
            else:
                rows = []
                for i, ident in enumerate(wanted):
                    row = repo.get(ident)
                    if row is None:
                        raise BadRequest(
                            f"{where}[{i}].segmentId: segment definition '{ident}' was not found in this sandbox."
                        )
                    rows.append(row)
            return [_segment_info(r) for r in rows]


def batch_evaluated(row: models.SegmentDefinition) -> bool:
    """Definitions a ``"*"`` job evaluates: batch ones whose audience is not inactive or deleted."""
    body = row.body or {}
    method = (body.get("evaluationInfo") or {}).get("batch") or {}
    if method.get("enabled") is False:
        return False
    return str(body.get("lifecycleState") or "").lower() not in ("inactive", "archived", "deleted")


def _segment_info(row: models.SegmentDefinition) -> dict:
    body = row.body or {}
    policy_id = body.get("mergePolicyId")
    segment: dict[str, Any] = {
        "id": row.id,
        "version": int(body.get("version") or 1),
        "expression": body.get("expression"),
        "mergePolicyId": policy_id,
        "mergePolicy": {"id": policy_id, "version": 1},
    }
    return {"segmentId": row.id, "segment": segment}


def _errors(error: Any) -> list[dict]:
    if error is None:
        return [{"code": ERROR_RUN_FAILED, "msg": "The Dagster run of this job failed."}]
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


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _parse_sort(text: str) -> tuple[str, bool]:
    field, _, direction = str(text).partition(":")
    direction = (direction or "asc").lower()
    if field not in SORTABLE or direction not in ("asc", "desc"):
        raise BadRequest(
            f"sort: '{text}' must be <attribute>:asc|desc with attribute one of {', '.join(sorted(SORTABLE))}."
        )
    return field, direction == "desc"


def _sort_value(value: Any) -> tuple:
    # None sorts first; numbers and strings never compare with each other.
    if value is None:
        return (0, "")
    return (1, value) if isinstance(value, int | float) else (2, str(value))


def _parse_property(text: str) -> Callable[[dict], bool]:
    """``a.b==v`` (JSON path) or ``arr~key==v`` (some element of array ``arr`` has ``key == v``)."""
    path, sep, expected = str(text).partition("==")
    if not sep or not path:
        raise BadRequest(
            f"property: '{text}' must be <jsonPath>==<value> or <arrayAttribute>~<key>==<value>."
        )
    array, tilde, key = path.partition("~")

    def matches(value: Any) -> bool:
        if isinstance(value, bool):
            return str(value).lower() == expected.lower()
        if isinstance(value, dict | list):
            return json.dumps(value) == expected
        return value is not None and str(value) == expected

    if tilde:
        return lambda doc: any(
            isinstance(item, Mapping) and matches(_path(item, key)) for item in _path(doc, array) or []
        )
    return lambda doc: matches(_path(doc, path))


def _path(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(part)
    return doc


def _bulk_ids(body: Any) -> list[str]:
    items = body.get("ids") if isinstance(body, Mapping) else None
    if not isinstance(items, list) or not items:
        raise BadRequest('ids: expected {"ids": [{"id": "<segment job id>"}, ...]} with at least one id.')
    if len(items) > MAX_BULK_IDS:
        raise BadRequest(
            f"ids: at most {MAX_BULK_IDS} ids per request (got {len(items)}).", code="UPAPI-113015-400"
        )
    ids = []
    for i, item in enumerate(items):
        ident = item.get("id") if isinstance(item, Mapping) else item
        if not isinstance(ident, str) or not ident:
            raise BadRequest(f'ids[{i}]: expected {{"id": "<segment job id>"}}.')
        ids.append(ident)
    return ids
