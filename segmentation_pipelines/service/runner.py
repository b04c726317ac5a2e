"""The REST API's own runner: what the Dagster daemon's sensors do, for a ``serve`` that runs without a daemon.

``segmentation-pipelines serve`` alone has no daemon, so nothing would launch a ``NEW`` segment job. With
``SEGMENTATION_RUNNER=auto`` (the default) the API process starts this runner; each turn it asks the launcher
whether a Dagster daemon is running and, only when none is, does the daemon's work itself:

* claims ``NEW`` segment jobs and export jobs (the same ``claim_for_launch`` as the launcher sensor, so a daemon that starts later
  never launches one twice) and runs each in this process through Dagster, one at a time, on a worker thread;
* brings stale profile stores current (what ``profile_store_refresher`` does);
* every ``RECONCILE_EVERY_S``, runs the reconciliation pass (``service/reconcile.py``).

Runs it executes are ordinary Dagster runs of the same instance (visible in the UI once one is started), tagged
with this process as their worker, so a killed API process leaves runs the next reconciliation ends as failed.
"""

from __future__ import annotations

import logging
import threading
import time

from segmentation_pipelines.service import external_audiences as ext
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.export_jobs import NEW as EXPORT_NEW
from segmentation_pipelines.service.export_jobs import ExportJobsService
from segmentation_pipelines.service.export_jobs import jobs_in_status as export_jobs_in_status
from segmentation_pipelines.service.export_reconcile import reconcile_export_jobs
from segmentation_pipelines.service.profile_store import ProfileStoreService, sandboxes_with_data
from segmentation_pipelines.service.reconcile import reconcile_segment_jobs
from segmentation_pipelines.service.segment_jobs import NEW, SegmentJobsService, jobs_in_status
from segmentation_pipelines.settings import Settings

log = logging.getLogger(__name__)

POLL_S = 0.5
STORE_CHECK_EVERY_S = 5.0
RECONCILE_EVERY_S = 10.0


class Runner:
    """A background thread running requests while no Dagster daemon does (see the module docstring)."""

    def __init__(self, settings: Settings, poll_s: float = POLL_S):
        self.settings = settings
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_store_check = 0.0
        self._next_reconcile = 0.0
        self._next_external_check = 0.0

    def start(self) -> Runner:
        self._thread = threading.Thread(target=self._loop, name="segmentation-runner", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        log.info("runner started: runs segment jobs and store refreshes while no Dagster daemon runs")
        while not self._stop.is_set():
            try:
                self.turn()
            except Exception:  # a failing turn must not end the runner; the next one retries
                log.exception("runner turn failed")
            self._stop.wait(self.poll_s)

    def turn(self) -> int:
        """One turn; the number of requests it ran (0 while a daemon runs)."""
        ctx = ServiceContext.create(self.settings)
        if self.settings.runner == "auto" and ctx.launcher.daemon_running():
            return 0
        now = time.monotonic()
        ran = 0
        for org, sandbox, job_id in jobs_in_status(ctx.catalog, [NEW], limit=10):
            if self._stop.is_set():
                break
            jobs = SegmentJobsService(ServiceContext.create(self.settings, org, sandbox))
            if jobs.claim_for_launch(job_id) is not None:
                log.info("runner: running segment job %s", job_id)
                jobs.run_in_process(job_id)
                ran += 1
        ran += self._exports()
        ran += self._external_audiences(now)
        if now >= self._next_store_check:
            self._next_store_check = now + STORE_CHECK_EVERY_S
            for org, sandbox in sandboxes_with_data(ctx.catalog):
                store = ProfileStoreService(ServiceContext.create(self.settings, org, sandbox))
                if store.stale():
                    log.info("runner: refreshing the profile store of %s/%s", org, sandbox)
                    store.refresh(reason="stale store (API runner)")
                    ran += 1
        if now >= self._next_reconcile:
            self._next_reconcile = now + RECONCILE_EVERY_S
            reconcile_segment_jobs(self.settings)
            reconcile_export_jobs(self.settings)
        return ran

    def _exports(self) -> int:
        """Export jobs in ``NEW`` (what ``export_job_launcher`` does), run here one after the other."""
        ctx = ServiceContext.create(self.settings)
        ran = 0
        for org, sandbox, export_id in export_jobs_in_status(ctx.catalog, [EXPORT_NEW], limit=10):
            if self._stop.is_set():
                break
            exports = ExportJobsService(ServiceContext.create(self.settings, org, sandbox))
            if exports.claim_for_launch(export_id) is not None:
                log.info("runner: running export job %s", export_id)
                exports.run_in_process(export_id)
                ran += 1
        return ran

    def _external_audiences(self, now: float) -> int:
        """External-audience ingestion: new files (what ``external_audience_files`` does), ``NEW`` runs, then
        now and then TTL maintenance and reconciliation of their runs."""
        catalog = ServiceContext.create(self.settings).catalog
        sandboxes = sorted({(org, sandbox) for org, sandbox, _ in ext.audiences_everywhere(catalog)})
        if now >= self._next_external_check:
            self._next_external_check = now + STORE_CHECK_EVERY_S
            for org, sandbox in sandboxes:
                service = ext.ExternalAudiencesService(ServiceContext.create(self.settings, org, sandbox))
                service.arrivals()
                service.maintain()
            ext.reconcile_runs(self.settings)
        ran = 0
        for org, sandbox, run_id in ext.runs_in_status(catalog, [ext.NEW]):
            if self._stop.is_set():
                break
            service = ext.ExternalAudiencesService(ServiceContext.create(self.settings, org, sandbox))
            if service.claim_for_launch(run_id) is not None:
                log.info("runner: running external audience run %s", run_id)
                service.run_in_process(run_id)
                ran += 1
        return ran
