"""The reconciliation pass: repair every segment job whose run ended (or vanished) without it noticing.

Run-status sensors write outcomes back as they happen, but a sensor callback that raised loses its event, a daemon
may have been down, an in-process run's process may have been killed, and a run request may never have become a
run. This pass looks at every active job (``QUEUED``, ``PROCESSING``, ``CANCELLING``) and its run, through the
launcher, and settles it:

* run found: its status is written onto the job (``sync_with_run``); a cancelling job's still-running run is asked
  to terminate again; an in-process run whose process is gone is ended first (no one else will);
* no run, after ``grace_s``: a ``QUEUED`` job goes back to ``NEW`` (relaunched with the next attempt), a
  ``CANCELLING`` one becomes ``CANCELLED``, and a job whose recorded run disappeared becomes ``FAILED``.

The ``segment_job_reconciler`` sensor runs it under a daemon, the REST API's runner without one, and reading a job
(``SegmentJobsService.get``) settles that one job.
"""

from __future__ import annotations

import logging
from collections import Counter

from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.launcher import (
    ERROR_RUN_VANISHED,
    RUN_CANCELED,
    RUN_CANCELING,
    RUN_FAILURE,
    TAG_WORKER,
)
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.segment_jobs import (
    CANCELLING,
    PROCESSING,
    QUEUED,
    SegmentJobsService,
    jobs_in_status,
)
from segmentation_pipelines.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 120.0
ACTIVE_WITH_RUN = (QUEUED, PROCESSING, CANCELLING)


def reconcile_job(ctx: ServiceContext, job_id: str, grace_s: float = DEFAULT_GRACE_S) -> str:
    """Settle one active job of ``ctx``'s sandbox; returns what was done (for the sensor's summary)."""
    service = SegmentJobsService(ctx)
    launcher = ctx.launcher
    with ctx.catalog.session(readonly=True) as session:
        row = ctx.repo(session, models.SegmentJob).get(job_id)
        if row is None or row.status not in ACTIVE_WITH_RUN:
            return "skipped"
        status, run_id, updated_ms = row.status, row.run_id, row.updated_ms
    run = launcher.find_run(job_id, run_id)
    stale = now_ms() - updated_ms > grace_s * 1000
    if run is None:
        if not stale:
            return "waiting"
        if status == CANCELLING:
            service.sync_with_run(job_id, RUN_CANCELED, None)
            return "cancelled"
        if run_id:
            error = {"code": ERROR_RUN_VANISHED, "msg": f"Dagster run {run_id} of this job no longer exists."}
            service.sync_with_run(job_id, RUN_FAILURE, run_id, error=error)
            return "failed"
        return (
            "requeued" if service.requeue(job_id, "its run request never became a Dagster run") else "skipped"
        )
    # A launched run's evaluating process may end normally a moment before its run does: wait out the grace.
    lost = run.worker_lost and (stale or TAG_WORKER in run.tags)
    if lost:
        run = launcher.end_lost_run(run.run_id) or run
    if status == CANCELLING and not run.finished and run.status != RUN_CANCELING:
        launcher.terminate(run.run_id)
        run = launcher.find_run(job_id, run.run_id) or run
    # A lost worker's run says so itself (launcher.errors), whichever writer reads it first.
    error = launcher.errors(run.run_id) if run.status == RUN_FAILURE else None
    after = service.sync_with_run(job_id, run.status, run.run_id, error=error)["status"]
    return "unchanged" if after == status else after.lower()


def reconcile_segment_jobs(settings: Settings, grace_s: float = DEFAULT_GRACE_S) -> Counter:
    """Settle every active job of every sandbox; a count of what was done."""
    done: Counter = Counter()
    catalog = ServiceContext.create(settings).catalog
    for org, sandbox, job_id in jobs_in_status(catalog, ACTIVE_WITH_RUN):
        try:
            done[reconcile_job(ServiceContext.create(settings, org, sandbox), job_id, grace_s)] += 1
        except Exception:  # one broken job must not stop the others from being repaired
            log.exception("reconciling segment job %s failed", job_id)
            done["error"] += 1
    return done
