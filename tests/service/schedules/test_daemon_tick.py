"""End to end through the Dagster daemon: an active schedule due in the next minutes fires once, the daemon
launches the run of its segment job, the run evaluates the selected segments, and the job ends SUCCEEDED with
``source: "scheduler"`` and its metrics. Slow (it waits for a real minute boundary)."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import pytest

from segmentation_pipelines.dagster_home import PROJECT_ROOT, dagster_env
from segmentation_pipelines.service.services import Services

from .conftest import dagster_command
from .test_scheduled_run import _build_store, _definition

DAEMON = Path(sys.executable).with_name("dagster-daemon")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(not DAEMON.exists(), reason="dagster-daemon is not installed in this environment")
def test_the_daemon_fires_the_schedule_and_the_job_succeeds(settings, ctx, tmp_path):
    _build_store(ctx, tmp_path)
    services = Services(ctx)
    us = services.segment_definitions.create(_definition("US", 'homeAddress.countryCode = "US"'))
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)).replace(second=0, microsecond=0)
    schedule = services.schedules.create(
        {
            "name": "soon",
            "type": "batch_segmentation",
            "properties": {"segments": [us["id"]]},
            "schedule": f"0 {due.minute} {due.hour} * * ?",
            "state": "active",
        }
    )
    env = dagster_env(settings)
    log_path = tmp_path / "daemon.log"
    argv = [str(DAEMON), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")]
    with log_path.open("w") as log, dagster_command(argv, env, log) as daemon:
        deadline = time.monotonic() + (due - dt.datetime.now(dt.UTC)).total_seconds() + 150
        while True:
            jobs = services.segment_jobs.list()["children"]
            if jobs and jobs[0]["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                break
            assert time.monotonic() < deadline, (
                f"no finished job; jobs={jobs}; log={log_path.read_text()[-3000:]}"
            )
            assert daemon.poll() is None, log_path.read_text()[-3000:]
            time.sleep(2)
    (job,) = services.segment_jobs.list()["children"]  # exactly one run for the tick
    assert job["status"] == "SUCCEEDED", job
    assert job["source"] == "scheduler"
    assert job["properties"]["scheduleId"] == schedule["id"]
    assert job["evaluationTime"] == due.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert job["metrics"]["segmentedProfileCounter"] == {us["id"]: 2}
