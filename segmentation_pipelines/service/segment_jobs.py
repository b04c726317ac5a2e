"""Segment jobs (``/segment/jobs``): requests to evaluate a set of segment definitions at one evaluation time.

A job row is the AEP ``SegmentJob`` document plus the columns that drive it (``status``, ``attempt``, ``run_id``,
``evaluation_ms``). Its life (the life of every tracked run, ``service/tracked_runs.py``):

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

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import object_session

from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.errors import BadRequest, Conflict
from segmentation_pipelines.launcher import (
    KIND_SEGMENT_JOB,
    RUN_STATUS_TO_REQUEST,
    SEGMENT_JOB,
    TAG_EVALUATION_TIME,
    RunRequest,
    definition_asset_key,
    evaluation_partition,
    run_status_name,
)
from segmentation_pipelines.service.profile_store import ProfileStoreService
from segmentation_pipelines.service.query import (
    bulk_results,
    int_param,
    parse_bulk_ids,
    parse_sort,
    property_filters,
    sort_docs,
    status_filter,
    values_of,
)
from segmentation_pipelines.service.segment_job_metrics import (
    evaluated_store,
    evaluation_errors,
    evaluation_metrics,
    with_dagster_phase,
)
from segmentation_pipelines.service.segment_selection import check_evaluation_day, resolve_segments
from segmentation_pipelines.service.tracked_runs import INTERNAL, TrackedRuns, error_list
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
SORTABLE = frozenset({"creationTime", "updateTime", "status", "id", "evaluationTime"})


class SegmentJobsService(TrackedRuns):
    """``/segment/jobs`` in one (org, sandbox); see the module docstring for the life of a job."""

    model = models.SegmentJob
    what = "Segment job"
    CLAIMED = QUEUED
    TERMINAL = TERMINAL
    RUNNING = (QUEUED, PROCESSING, CANCELLING)
    WORK_METRIC = "profileSegmentationTime"
    DEFAULT_ERROR = "The Dagster run of this job failed."

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
        segments = resolve_segments(self.ctx, body)
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
            INTERNAL: {"launch": mode},
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
        return self.settle_on_read(job_id, doc["status"], run_id) or doc

    def list(self, **query: Any) -> dict:
        start = int_param(query, "start", 0)
        limit = int_param(query, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        status = query.get("status")
        filters = property_filters(query.get("property"))
        order = parse_sort(query.get("sort"), SORTABLE)
        m = models.SegmentJob
        where = []
        if status:
            where.append(m.status.in_(status_filter(status, STATUSES)))
        with self.ctx.catalog.session(readonly=True) as session:
            docs = [
                self._doc(row)
                for row in self.ctx.repo(session, m).find(*where, order_by=[m.created_ms, m.id])
            ]
        docs = sort_docs([d for d in docs if all(f(d) for f in filters)], order)
        page = docs[start : start + limit]
        result: dict[str, Any] = {"_page": {"totalCount": len(docs), "pageSize": len(page)}, "children": page}
        links: dict[str, Any] = {}
        if start + limit < len(docs):
            params = {k: v for k, v in query.items() if k not in ("start", "limit") and v is not None}
            extra = "".join(f"&{k}={v}" for k, values in params.items() for v in values_of(values))
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
        ids = parse_bulk_ids(body)
        with self.ctx.catalog.session(readonly=True) as session:
            repo = self.ctx.repo(session, models.SegmentJob)
            found = {i: self._doc(row) for i in ids if (row := repo.get(i)) is not None}
        return bulk_results(ids, found, self.what, self.ctx.request_id)

    # --- Dagster side ------------------------------------------------------------------------------------------

    def run_request_for(self, job_id: str) -> RunRequest:
        """What a run of this job is: its definitions' assets, after the profile-store assets that are stale
        (so a job never evaluates a stale store), and the job's tags.

        Fixes the evaluation time (now) if the job has none yet, so every run of the job evaluates at one time.
        """
        store = self._prepare_request(job_id)
        with self.ctx.catalog.session() as session:
            row = self._row(session, job_id, lock=True)
            if row.evaluation_ms is None:
                row.evaluation_ms = now_ms()
                self._touch(session, row)
            return self._run_request(row, store)

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
                errors = error_list(error, self.DEFAULT_ERROR) if target == FAILED else None
                self._set_status(session, row, target, errors=errors)
            elif _RANK[target] > _RANK.get(row.status, 0):
                self._set_status(session, row, target)
            return self._doc(row)

    def record_evaluation(self, job_id: str, summary: Any) -> dict:
        """Fill ``metrics`` from ``run_evaluation``'s summary (per-audience counts, profiles, phase times)."""
        with self.ctx.catalog.session() as session:
            row = self._row(session, job_id, lock=True)
            body = {**row.body, "metrics": {**(row.body.get("metrics") or {}), **evaluation_metrics(summary)}}
            errors = evaluation_errors(summary)
            if (
                errors
            ):  # the job still succeeds for the others; each definition left out is an error of the job
                body["errors"] = errors
            store = evaluated_store(summary)
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

    def definition_keys(self, job_id: str) -> dict[str, list[str]]:
        """Definition id -> its asset key (kept from its creation), for the definitions of a job."""
        with self.ctx.catalog.session(readonly=True) as session:
            return self._definition_keys(session, self.definition_ids(job_id))

    # --- internals ---------------------------------------------------------------------------------------------

    def _set_status(self, session, row, status: str, errors: list | None = None) -> None:
        super()._set_status(session, row, status, errors=errors)
        if status in TERMINAL and (row.body.get("metrics") or {}).get("phasesInMs"):
            row.body = {**row.body, "metrics": with_dagster_phase(row.body["metrics"])}
            session.flush()

    def cancelling(self, row: models.SegmentJob) -> bool:
        return row.status == CANCELLING

    def _prepare_request(self, job_id: str) -> list[list[str]]:
        """The profile-store assets a run must refresh before it evaluates (stale ones and what they feed)."""
        return ProfileStoreService(self.ctx).refresh_selection()

    def _on_claim(self, row: models.SegmentJob) -> None:
        if row.evaluation_ms is None:
            row.evaluation_ms = now_ms()

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

    def _doc(self, row: models.SegmentJob) -> dict:
        doc = {k: v for k, v in row.body.items() if k != INTERNAL}
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
