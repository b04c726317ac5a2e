"""Fixtures of the segment-job tests: a service context on a fresh home, definitions rows to run, and a daemon
(a stand-in in this process, or a real ``dagster-daemon``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from segmentation_pipelines.catalog import models
from segmentation_pipelines.dagster_home import dagster_env
from segmentation_pipelines.dagster_launcher import DagsterLauncher
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.segment_jobs import SegmentJobsService
from segmentation_pipelines.settings import Settings

# The promise: a cancelled job ends CANCELLED within seconds. The evaluation notices a cancel within ~0.1 s, but
# Dagster's step failure and run bookkeeping that follow take seconds on a loaded machine (CI shares 2 cores with
# other work): 15 s is an honest bound there, and far below what the cancelled work would take without the cancel
# (PROBE_WORK_S for the probe location; the uncancelled baseline evaluation in test_interrupts).
CANCEL_WITHIN_S = 15.0
PROBE_WORK_S = 120.0


@pytest.fixture
def ctx(settings, monkeypatch) -> ServiceContext:
    # Sensors and run workers read the home from the environment, like a deployed code location.
    monkeypatch.setenv("SEGMENTATION_HOME", str(settings.home))
    monkeypatch.delenv("SEGMENTATION_CATALOG_URL", raising=False)
    return ServiceContext.create(settings, None, "prod")


@pytest.fixture
def jobs(ctx) -> SegmentJobsService:
    return SegmentJobsService(ctx)


def add_definition_row(
    ctx: ServiceContext, name: str, pql: str = 'homeAddress.countryCode = "US"', **body
) -> str:
    """A segment definition row as the definitions service stores it (for tests that need no evaluation)."""
    doc = {
        "name": name,
        "expression": {"type": "PQL", "format": "pql/text", "value": pql},
        "mergePolicyId": "mp-1",
        "schema": {"name": "_xdm.context.profile"},
        **body,
    }
    with ctx.catalog.session() as session:
        row = ctx.repo(session, models.SegmentDefinition).add(name=name, batch_enabled=True, body=doc)
        return row.id


@contextmanager
def dagster_daemon(settings: Settings, folder: Path) -> Iterator[subprocess.Popen]:
    """A real ``dagster-daemon`` on ``settings``' home loading the project's definitions, run in ``folder`` (its
    output in ``folder/daemon.log``); on exit its whole process group (code server, run workers) is stopped."""
    with (folder / "daemon.log").open("w") as log:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dagster-daemon")),
                "run",
                "-m",
                "segmentation_pipelines.definitions",
            ],
            env=dagster_env(settings),
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


class LocalDaemon:
    """Stands in for the Dagster daemon in HTTP tests: ticks the launcher sensor and runs what it requests.

    Each requested run executes in-process (``SegmentJobsService.run_in_process``) on ``definitions`` (or the
    project's own when None), in a background thread, as a run worker launched by the daemon would.
    """

    def __init__(self, settings, definitions=None, interval_s: float = 0.2):
        self.settings, self.definitions, self.interval_s = settings, definitions, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="local-daemon")
        self.errors: list[BaseException] = []

    def _loop(self) -> None:
        import dagster as dg

        from segmentation_pipelines import dagster_launcher as dagster_runs
        from segmentation_pipelines.defs.jobs.sensors import segment_job_launcher

        instance = dagster_runs.instance_for(self.settings)
        while not self._stop.is_set():
            try:
                result = segment_job_launcher(dg.build_sensor_context(instance=instance))
                for request in getattr(result, "run_requests", None) or []:
                    tags = request.tags
                    ctx = ServiceContext.create(
                        self.settings, tags["segmentation/org"], tags["segmentation/sandbox"]
                    )
                    if self.definitions is not None:
                        ctx.launcher = DagsterLauncher(ctx.settings, definitions=self.definitions)
                    threading.Thread(
                        target=SegmentJobsService(ctx).run_in_process,
                        args=(tags["segmentation/job_id"],),
                        daemon=True,
                    ).start()
            except BaseException as exc:  # surfaced by the test through .errors
                self.errors.append(exc)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> LocalDaemon:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
