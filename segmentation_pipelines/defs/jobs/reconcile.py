"""The reconciliation pass: repair every segment job whose Dagster run ended (or vanished) without it noticing.

Run-status sensors write outcomes back as they happen, but a sensor callback that raised loses its event, a daemon
may have been down, an in-process run's process may have been killed, and a run request may never have become a
run. This pass looks at every active job (``QUEUED``, ``PROCESSING``, ``CANCELLING``) and its run, and settles it:

* run found: its status is written onto the job (``sync_with_run``); a cancelling job's still-running run is asked
  to terminate again; an in-process run whose process is gone is marked failed first (no one else will);
* no run, after ``grace_s``: a ``QUEUED`` job goes back to ``NEW`` (relaunched with the next attempt), a
  ``CANCELLING`` one becomes ``CANCELLED``, and a job whose recorded run disappeared becomes ``FAILED``.
"""

from __future__ import annotations

import logging
from collections import Counter

import dagster as dg

from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.service import dagster_runs
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.segment_jobs import (
    CANCELLING,
    ERROR_RUN_VANISHED,
    ERROR_WORKER_LOST,
    PROCESSING,
    QUEUED,
    TAG_JOB_ID,
    SegmentJobsService,
    jobs_in_status,
)
from segmentation_pipelines.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 120.0


def _job_row(ctx: ServiceContext, job_id: str) -> models.SegmentJob | None:
    with ctx.catalog.session(readonly=True) as session:
        return ctx.repo(session, models.SegmentJob).get(job_id)


def _find_run(instance: dg.DagsterInstance, job_id: str, run_id: str | None) -> dg.DagsterRun | None:
    if run_id:
        return instance.get_run_by_id(run_id)
    runs = instance.get_runs(dg.RunsFilter(tags={TAG_JOB_ID: job_id}), limit=1)  # newest first
    return runs[0] if runs else None


def _settle_dead_worker(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRun:
    """An unfinished in-process run whose process is gone: end it in Dagster (failed, or cancelled if asked)."""
    if run.is_finished or dagster_runs.worker_alive(run) is not False:
        return run
    message = f"The process running this run ({run.tags.get(dagster_runs.TAG_WORKER)}) is gone."
    instance.report_engine_event(message, run)
    if run.status == dg.DagsterRunStatus.CANCELING:
        instance.report_run_canceled(run, message=message)
    else:
        instance.report_run_failed(run, message=message)
    return instance.get_run_by_id(run.run_id) or run


def reconcile_job(
    settings: Settings, instance: dg.DagsterInstance, org: str, sandbox: str, job_id: str, grace_s: float
) -> str:
    """Settle one active job; returns what was done (for the sensor's summary)."""
    ctx = ServiceContext.create(settings, org, sandbox)
    service = SegmentJobsService(ctx)
    row = _job_row(ctx, job_id)
    if row is None or row.status not in (QUEUED, PROCESSING, CANCELLING):
        return "skipped"
    run = _find_run(instance, job_id, row.run_id)
    stale = now_ms() - row.updated_ms > grace_s * 1000
    if run is None:
        if not stale:
            return "waiting"
        if row.status == CANCELLING:
            service.sync_with_run(job_id, "CANCELED", None)
            return "cancelled"
        if row.run_id:
            error = {
                "code": ERROR_RUN_VANISHED,
                "msg": f"Dagster run {row.run_id} of this job no longer exists.",
            }
            service.sync_with_run(job_id, "FAILURE", row.run_id, error=error)
            return "failed"
        return (
            "requeued" if service.requeue(job_id, "its run request never became a Dagster run") else "skipped"
        )
    if not run.is_finished:
        run = _settle_dead_worker(instance, run)
    if row.status == CANCELLING and not run.is_finished and run.status != dg.DagsterRunStatus.CANCELING:
        instance.run_coordinator.cancel_run(run.run_id)
        run = instance.get_run_by_id(run.run_id) or run
    error = None
    if run.status == dg.DagsterRunStatus.FAILURE:
        error = dagster_runs.run_errors(instance, run.run_id)
        if dagster_runs.worker_alive(run) is False and not error:
            error = [{"code": ERROR_WORKER_LOST, "msg": "The process running this job died during the run."}]
    before = row.status
    after = service.sync_with_run(job_id, run.status, run.run_id, error=error)["status"]
    return "unchanged" if after == before else after.lower()


def reconcile_segment_jobs(
    settings: Settings, instance: dg.DagsterInstance, grace_s: float = DEFAULT_GRACE_S
) -> Counter:
    """Settle every active job of every sandbox; a count of what was done."""
    done: Counter = Counter()
    catalog = ServiceContext.create(settings).catalog
    for org, sandbox, job_id in jobs_in_status(catalog, (QUEUED, PROCESSING, CANCELLING)):
        try:
            done[reconcile_job(settings, instance, org, sandbox, job_id, grace_s)] += 1
        except Exception:  # one broken job must not stop the others from being repaired
            log.exception("reconciling segment job %s failed", job_id)
            done["error"] += 1
    return done
