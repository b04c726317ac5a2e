"""The reconciliation pass of export jobs (as ``service/reconcile.py`` is for segment jobs): every ``PROCESSING``
export job whose run ended, died with its process, or never appeared is settled, so none stays ``PROCESSING``.

* run found: its status is written onto the job; a cancelled job's still-running run is terminated again; an
  in-process run whose process is gone (kill -9) is ended as failed first;
* no run after ``grace_s``: a job never launched goes back to ``NEW`` (relaunched with the next attempt), a
  cancelled one becomes ``CANCELLED``, one whose recorded run vanished becomes ``FAILED``.
"""

from __future__ import annotations

import logging
from collections import Counter

from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.launcher import ERROR_RUN_VANISHED, RUN_CANCELED, RUN_FAILURE
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.export_jobs import PROCESSING, ExportJobsService, jobs_in_status
from segmentation_pipelines.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 120.0


def reconcile_export_job(ctx: ServiceContext, job_id: int, grace_s: float = DEFAULT_GRACE_S) -> str:
    service = ExportJobsService(ctx)
    launcher = ctx.launcher
    with ctx.catalog.session(readonly=True) as session:
        row = ctx.repo(session, models.ExportJob).get(int(job_id))
        if row is None or row.status != PROCESSING:
            return "skipped"
        run_id, updated_ms = row.run_id, row.updated_ms
        cancelling = bool((row.body.get("_internal") or {}).get("cancelRequested"))
    run = launcher.find_run(str(job_id), run_id)
    if run is None:
        if now_ms() - updated_ms <= grace_s * 1000:
            return "waiting"
        if cancelling:
            service.sync_with_run(job_id, RUN_CANCELED, None)
            return "cancelled"
        if run_id:
            error = {
                "code": ERROR_RUN_VANISHED,
                "msg": f"Dagster run {run_id} of this export job no longer exists.",
            }
            service.sync_with_run(job_id, RUN_FAILURE, run_id, error=error)
            return "failed"
        return (
            "requeued" if service.requeue(job_id, "its run request never became a Dagster run") else "skipped"
        )
    lost = run.worker_lost
    if lost:
        run = launcher.end_lost_run(run.run_id) or run
    if cancelling and not run.finished:
        launcher.terminate(run.run_id)
        run = launcher.find_run(str(job_id), run.run_id) or run
    error = launcher.errors(run.run_id) if run.status == RUN_FAILURE else None
    after = service.sync_with_run(job_id, run.status, run.run_id, error=error)["status"]
    return "unchanged" if after == PROCESSING else after.lower()


def reconcile_export_jobs(settings: Settings, grace_s: float = DEFAULT_GRACE_S) -> Counter:
    done: Counter = Counter()
    catalog = ServiceContext.create(settings).catalog
    for org, sandbox, job_id in jobs_in_status(catalog, [PROCESSING]):
        try:
            done[reconcile_export_job(ServiceContext.create(settings, org, sandbox), job_id, grace_s)] += 1
        except Exception:  # one broken job must not stop the others
            log.exception("reconciling export job %s failed", job_id)
            done["error"] += 1
    return done
