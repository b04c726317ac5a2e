"""The deployed path: a real ``dagster-daemon`` (sensors, run queue, code server, run worker processes).

A job created ``NEW`` (as the REST API does) is launched by the ``segment_job_launcher`` sensor with run key
``"<job id>:1"``, runs in a worker process of the code server, and is marked ``SUCCEEDED`` by the run-status
sensors, with the hand-computed members and its metrics.
"""

from __future__ import annotations

import time

import pytest

from segmentation_pipelines import dagster_launcher as dagster_runs
from segmentation_pipelines.client import SegmentationClient

from .conftest import dagster_daemon
from .scenario import EXPECTED_T, Scenario, T

pytestmark = pytest.mark.slow


def test_daemon_launches_and_tracks_a_segment_job(ctx, jobs, tmp_path):
    scenario = Scenario(SegmentationClient(home=ctx.settings.home), tmp_path).load()
    with dagster_daemon(ctx.settings, tmp_path) as daemon:
        job = jobs.create(
            [{"segmentId": scenario.ids["us"]}, {"segmentId": scenario.ids["big"]}], evaluation_time=T
        )
        assert job["status"] == "NEW"
        deadline = time.monotonic() + 240
        while jobs.get(job["id"])["status"] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()[-3000:]
            time.sleep(1)
    done = jobs.get(job["id"])
    assert done["status"] == "SUCCEEDED", done.get("errors")
    run = dagster_runs.instance_for(ctx.settings).get_run_by_id(done["computeGatewayJobId"])
    assert run.tags["dagster/run_key"] == f"{job['id']}:1"
    assert run.tags["dagster/sensor_name"] == "segment_job_launcher"
    assert run.tags["segmentation/evaluation_time"] == "2026-03-10T12:00:00.000Z"
    statuses = scenario.statuses()
    assert statuses["us"] == EXPECTED_T["us"] and statuses["big"] == EXPECTED_T["big"]
    assert statuses["loyal"] == {}  # not part of the job
    assert done["metrics"]["segmentedProfileCounter"] == {scenario.ids["us"]: 3, scenario.ids["big"]: 3}
