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

from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.export_jobs import ExportJobsService
from segmentation_pipelines.service.external_audience_ingestion import ExternalAudienceIngestion
from segmentation_pipelines.service.external_audience_runs import ExternalAudienceRunsService
from segmentation_pipelines.service.external_audiences import audiences_everywhere
from segmentation_pipelines.service.profile_store import ProfileStoreService, sandboxes_with_data
from segmentation_pipelines.service.reconcile import reconcile
from segmentation_pipelines.service.segment_jobs import SegmentJobsService
from segmentation_pipelines.service.tracked_runs import TrackedRuns
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
        ran = self._run_new(SegmentJobsService) + self._run_new(ExportJobsService)
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
            reconcile(self.settings, SegmentJobsService)
            reconcile(self.settings, ExportJobsService)
        return ran

    def _run_new(self, kind: type[TrackedRuns], limit: int | None = 10) -> int:
        """``NEW`` requests of ``kind`` (what its launcher sensor does), claimed and run here one after the other."""
        catalog = ServiceContext.create(self.settings).catalog
        ran = 0
        for org, sandbox, ident in kind.in_status(catalog, [kind.NEW], limit=limit):
            if self._stop.is_set():
                break
            service = kind(ServiceContext.create(self.settings, org, sandbox))
            if service.claim_for_launch(ident) is not None:
                log.info("runner: running %s %s", kind.what.lower(), ident)
                service.run_in_process(ident)
                ran += 1
        return ran

    def _external_audiences(self, now: float) -> int:
        """External-audience ingestion: new files (what ``external_audience_files`` does), ``NEW`` runs, then
        now and then TTL maintenance and reconciliation of their runs."""
        catalog = ServiceContext.create(self.settings).catalog
        sandboxes = sorted({(org, sandbox) for org, sandbox, _ in audiences_everywhere(catalog)})
        if now >= self._next_external_check:
            self._next_external_check = now + STORE_CHECK_EVERY_S
            for org, sandbox in sandboxes:
                ingestion = ExternalAudienceIngestion(ServiceContext.create(self.settings, org, sandbox))
                ingestion.arrivals()
                ingestion.maintain()
            reconcile(self.settings, ExternalAudienceRunsService)
        return self._run_new(ExternalAudienceRunsService, limit=None)
