"""The Dagster side: the launcher sensor, the run-status sensors and the reconciliation pass, on a real instance.

Runs are executed with the probe code location (``probe_segments.py``) exactly as the sensors request them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from segmentation_pipelines import dagster_launcher as dagster_runs
from segmentation_pipelines.catalog import models
from segmentation_pipelines.dagster_launcher import DagsterLauncher, dagster_run_request
from segmentation_pipelines.defs import run_tracking
from segmentation_pipelines.defs.jobs import sensors
from segmentation_pipelines.service.reconcile import reconcile
from segmentation_pipelines.service.segment_jobs import SegmentJobsService

from .conftest import add_definition_row
from .probe_segments import probe_definitions

REPO = Path(__file__).resolve().parents[3]


def run_as_requested(ctx, request, work_s: float = 0.0, fail: bool = False):
    """Execute a run request (Dagster's, from a sensor, or the service's) in-process, as a run worker would (no
    write-back to the job)."""
    if not isinstance(request, dg.RunRequest):
        request = dagster_run_request(request)
    keys, tags = list(request.asset_selection), dict(request.tags)
    probe = probe_definitions(str(ctx.settings.home), definition_ids(ctx), work_s=work_s, fail=fail)
    job = probe.resolve_job_def("segment_job")
    instance = dagster_runs.instance_for(ctx.settings)
    return job.execute_in_process(
        instance=instance,
        asset_selection=keys,
        tags=tags,
        raise_on_error=False,
    )


def definition_ids(ctx) -> list[str]:
    with ctx.catalog.session() as session:
        return [r.id for r in ctx.repo(session, models.SegmentDefinition).find()]


def status_context(ctx, sensor_name, result, event):
    return dg.build_run_status_sensor_context(
        sensor_name=sensor_name,
        dagster_event=event,
        dagster_instance=dagster_runs.instance_for(ctx.settings),
        dagster_run=result.dagster_run,
    )


def test_launcher_requests_new_jobs_once(ctx, jobs):
    a = add_definition_row(ctx, "a")
    new = jobs.create([{"segmentId": a}], evaluation_time="2026-03-01T00:00:00Z")["id"]
    jobs.create([{"segmentId": a}], launch=False, job_id="by-schedule")
    instance = dagster_runs.instance_for(ctx.settings)
    result = sensors.segment_job_launcher(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests
    assert request.run_key == f"{new}:1" and request.job_name == "segment_job"
    assert request.asset_selection == [dg.AssetKey(["segment", f"a__{a.replace('-', '')[:8]}"])]
    assert request.tags["segmentation/job_id"] == new
    assert request.tags["segmentation/evaluation_time"] == "2026-03-01T00:00:00.000Z"
    assert jobs.get(new)["status"] == "QUEUED"
    again = sensors.segment_job_launcher(dg.build_sensor_context(instance=instance))
    assert isinstance(again, dg.SkipReason)


def test_run_status_sensors_write_outcomes_back(ctx, jobs):
    a = add_definition_row(ctx, "a")
    ok = jobs.create([{"segmentId": a}])["id"]
    [request] = sensors.segment_job_launcher(dg.build_sensor_context()).run_requests
    result = run_as_requested(ctx, request)
    assert result.success
    context = status_context(ctx, "segment_job_succeeded", result, result.get_run_success_event())
    sensors.segment_job_succeeded(context)
    job = jobs.get(ok)
    assert job["status"] == "SUCCEEDED" and job["metrics"]["segmentedProfileCounter"] == {a: 3}
    sensors.segment_job_succeeded(context)  # a repeated event changes nothing
    assert jobs.get(ok)["updateTime"] == job["updateTime"]

    bad = jobs.create([{"segmentId": a}])["id"]
    [request] = sensors.segment_job_launcher(dg.build_sensor_context()).run_requests
    result = run_as_requested(ctx, request, fail=True)
    assert not result.success
    context = status_context(ctx, "segment_job_failed", result, result.get_run_failure_event())
    sensors.segment_job_failed(context)
    job = jobs.get(bad)
    assert job["status"] == "FAILED" and "failed on purpose" in job["errors"][0]["msg"]
    assert "probe_segments.py" in job["errors"][0]["callStack"]


def test_run_status_sensor_ignores_other_runs(ctx):
    @dg.op
    def noop():
        return 1

    @dg.job
    def other():
        noop()

    result = other.execute_in_process(instance=dagster_runs.instance_for(ctx.settings))
    context = status_context(ctx, "segment_job_succeeded", result, result.get_run_success_event())
    assert isinstance(sensors.segment_job_succeeded(context), dg.SkipReason)


def test_reconciliation_repairs_jobs_left_behind(ctx, jobs):
    a = add_definition_row(ctx, "a")
    # 1. The run succeeded but no sensor wrote it back.
    done = jobs.create([{"segmentId": a}])["id"]
    result = run_as_requested(ctx, jobs.claim_for_launch(done))
    assert result.success
    # 2. A run request that never became a run.
    lost = jobs.create([{"segmentId": a}])["id"]
    jobs.claim_for_launch(lost)
    # 3. A cancel whose run never appeared.
    cancelling = jobs.create([{"segmentId": a}])["id"]
    jobs.claim_for_launch(cancelling)
    jobs.delete(cancelling)
    # 4. A job whose recorded run vanished.
    vanished = jobs.create([{"segmentId": a}])["id"]
    jobs.claim_for_launch(vanished)
    jobs.sync_with_run(vanished, "STARTED", "no-such-run")

    # A run that ended is settled at once; the others are too young to judge yet.
    assert reconcile(ctx.settings, SegmentJobsService, grace_s=3600) == {"succeeded": 1, "waiting": 3}
    assert reconcile(ctx.settings, SegmentJobsService, grace_s=0) == {
        "requeued": 1,
        "cancelled": 1,
        "failed": 1,
    }
    assert jobs.get(done)["status"] == "SUCCEEDED"
    assert jobs.get(lost)["status"] == "NEW"  # relaunched by the next launcher tick, with attempt 2
    assert jobs.claim_for_launch(lost).run_key == f"{lost}:2"
    assert jobs.get(cancelling)["status"] == "CANCELLED"
    assert (
        jobs.get(vanished)["status"] == "FAILED"
        and "no longer exists" in jobs.get(vanished)["errors"][0]["msg"]
    )


def test_killed_in_process_worker_ends_failed_and_a_new_job_succeeds(ctx, jobs):
    a = add_definition_row(ctx, "a")
    job_id = jobs.create([{"segmentId": a}])["id"]
    env = {**os.environ, "SEGMENTATION_HOME": str(ctx.settings.home), "PYTHONPATH": str(REPO)}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.service.segment_jobs.run_worker",
            str(ctx.settings.home),
            job_id,
            a,
            "120",
        ],
        env=env,
        cwd=REPO,
    )
    instance = dagster_runs.instance_for(ctx.settings)
    try:
        deadline = time.monotonic() + 60
        run = None
        while time.monotonic() < deadline:
            run_id = job_run_id(ctx, job_id)
            run = instance.get_run_by_id(run_id) if run_id else None
            if run is not None and run.status == dg.DagsterRunStatus.STARTED:
                break
            assert worker.poll() is None, "the worker exited early"
            time.sleep(0.2)
        assert run is not None and run.status == dg.DagsterRunStatus.STARTED
        time.sleep(1.0)  # inside the evaluation
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert jobs.get(job_id)["status"] == "PROCESSING"  # nobody is left to say otherwise...
    reconcile(ctx.settings, SegmentJobsService, grace_s=0)  # ...but the reconciliation pass
    job = jobs.get(job_id)
    assert job["status"] == "FAILED", job
    assert "is gone" in job["errors"][0]["msg"]
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert not (Path(ctx.settings.home) / "probe" / job_id).exists()
    ctx.launcher = DagsterLauncher(ctx.settings, definitions=probe_definitions(str(ctx.settings.home), [a]))
    assert SegmentJobsService(ctx).create([{"segmentId": a}], wait=True)["status"] == "SUCCEEDED"


def job_run_id(ctx, job_id):
    with ctx.catalog.session() as session:
        return session.get(models.SegmentJob, job_id).run_id


def test_launcher_waits_for_definitions_the_code_location_has_not_loaded(ctx, jobs, monkeypatch):
    a = add_definition_row(ctx, "a")
    b = add_definition_row(ctx, "b")  # created after the code location loaded: it has no asset yet
    loaded = probe_definitions(str(ctx.settings.home), [a])
    ready = jobs.create([{"segmentId": a}])["id"]
    early = jobs.create([{"segmentId": a}, {"segmentId": b}])["id"]
    instance = dagster_runs.instance_for(ctx.settings)
    result = sensors.segment_job_launcher(dg.build_sensor_context(instance=instance, definitions=loaded))
    assert [r.tags["segmentation/job_id"] for r in result.run_requests] == [ready]
    assert jobs.get(early)["status"] == "NEW"
    monkeypatch.setattr(run_tracking, "NOT_LOADED_GRACE_S", -1)
    assert isinstance(
        sensors.segment_job_launcher(dg.build_sensor_context(instance=instance, definitions=loaded)),
        dg.SkipReason,
    )
    job = jobs.get(early)
    assert job["status"] == "FAILED" and b in job["errors"][0]["msg"] and "reload" in job["errors"][0]["msg"]
