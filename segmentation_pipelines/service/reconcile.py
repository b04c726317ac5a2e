"""The reconciliation pass: repair every tracked request (segment job, export job, external-audience run) whose run
ended (or vanished) without it noticing.

Run-status sensors write outcomes back as they happen, but a sensor callback that raised loses its event, a daemon
may have been down, an in-process run's process may have been killed, and a run request may never have become a
run. This pass looks at every request whose run may have ended (``TrackedRuns.RUNNING``) and its run, through the
launcher, and settles it:

* run found: its status is written onto the request (``sync_with_run``); a cancelling request's still-running run
  is asked to terminate again; a run whose process is gone is ended first (no one else will; its errors then say
  ``ERROR_WORKER_LOST`` whoever reads them, see ``DagsterLauncher.end_lost_run``);
* no run, after ``grace_s``: a claimed request goes back to ``NEW`` (relaunched with the next attempt), a
  cancelling one becomes ``CANCELLED``, and one whose recorded run disappeared becomes ``FAILED``.

The reconciler sensors run it under a daemon, the REST API's runner without one, and reading a request
(``TrackedRuns.settle_on_read``) settles that one request.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.launcher import (
    ERROR_RUN_VANISHED,
    RUN_CANCELED,
    RUN_CANCELING,
    RUN_FAILURE,
    TAG_WORKER,
)
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.tracked_runs import TrackedRuns
from segmentation_pipelines.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 120.0


def reconcile_one(service: TrackedRuns, ident: Any, grace_s: float = DEFAULT_GRACE_S) -> str:
    """Settle one request of ``service``'s sandbox; returns what was done (for the sensor's summary)."""
    ctx, launcher = service.ctx, service.ctx.launcher
    with ctx.catalog.session(readonly=True) as session:
        row = ctx.repo(session, service.model).get(service._key(ident))
        if row is None or row.status not in service.RUNNING:
            return "skipped"
        status, run_id, updated_ms = row.status, row.run_id, row.updated_ms
        cancelling = service.cancelling(row)
    run = launcher.find_run(str(ident), run_id)
    stale = now_ms() - updated_ms > grace_s * 1000
    if run is None:
        if not stale:
            return "waiting"
        if cancelling:
            service.sync_with_run(ident, RUN_CANCELED, None)
            return "cancelled"
        if run_id:
            error = {
                "code": ERROR_RUN_VANISHED,
                "msg": f"Dagster run {run_id} of this {service.what.lower()} no longer exists.",
            }
            service.sync_with_run(ident, RUN_FAILURE, run_id, error=error)
            return "failed"
        return (
            "requeued" if service.requeue(ident, "its run request never became a Dagster run") else "skipped"
        )
    # A launched run's evaluating process may end normally a moment before its run does: wait out the grace.
    if run.worker_lost and (stale or TAG_WORKER in run.tags):
        run = launcher.end_lost_run(run.run_id) or run
    if cancelling and not run.finished and run.status != RUN_CANCELING:
        launcher.terminate(run.run_id)
        run = launcher.find_run(str(ident), run.run_id) or run
    error = launcher.errors(run.run_id) if run.status == RUN_FAILURE else None
    after = service.sync_with_run(ident, run.status, run.run_id, error=error)["status"]
    return "unchanged" if after == status else after.lower()


def reconcile(settings: Settings, kind: type[TrackedRuns], grace_s: float = DEFAULT_GRACE_S) -> Counter:
    """Settle every request of ``kind`` (e.g. ``SegmentJobsService``) of every sandbox; a count of what was done."""
    done: Counter = Counter()
    catalog = ServiceContext.create(settings).catalog
    for org, sandbox, ident in kind.in_status(catalog, kind.RUNNING):
        try:
            done[reconcile_one(kind(ServiceContext.create(settings, org, sandbox)), ident, grace_s)] += 1
        except Exception:  # one broken request must not stop the others from being repaired
            log.exception("reconciling %s %s failed", kind.what.lower(), ident)
            done["error"] += 1
    return done
