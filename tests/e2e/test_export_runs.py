"""Export jobs as Dagster runs: an export schedule's tick (Dagster's schedule API) launches an export that a run of
``export_job`` carries out, and a ``serve`` killed with SIGKILL mid-export leaves a job that the next ``serve`` ends
FAILED (its run's process is gone), after which the same request succeeds."""

from __future__ import annotations

import datetime as dt
import signal
import time

import dagster as dg
import pytest
from running import start, stop
from service.segment_jobs.scenario import Scenario, T

from segmentation_pipelines import SegmentationClient
from segmentation_pipelines.dagster_launcher import instance_for, load_definitions, settings_environment
from segmentation_pipelines.defs.schedules import build_schedule
from segmentation_pipelines.service.schedules import schedule_snapshot

PROFILE = {"name": "_xdm.context.profile"}
TICK = dt.datetime(2026, 3, 11, 2, 0, tzinfo=dt.UTC)


def test_an_export_schedule_tick_runs_an_export(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SEGMENTATION_HOME", str(home))
    with SegmentationClient(home=home) as client:
        scenario = Scenario(client, tmp_path).load()
        out = client.datasets.create({"name": "nightly", "schema": PROFILE})
        job = client.segment_jobs.create([{"segmentId": scenario.ids["loyal"]}], evaluation_time=T, wait=True)
        assert job["status"] == "SUCCEEDED", job.get("errors")
        schedule = client.schedules.create(
            {
                "name": "nightly export",
                "type": "export",
                "schedule": "0 0 2 * * ?",
                "state": "active",
                "properties": {
                    "filter": {"segments": [{"segmentId": scenario.ids["loyal"]}]},
                    "destination": {"datasetId": out["id"]},
                    "schema": PROFILE,
                },
            }
        )
        settings = client.ctx.settings
        (row,) = [r for r in schedule_snapshot(settings) if r["id"] == schedule["id"]]
        definition = build_schedule(row)
        assert definition.job_name == "export_job"
        instance = instance_for(settings)
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=TICK) as context:
            first = definition.evaluate_tick(context)
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=TICK) as context:
            again = definition.evaluate_tick(context)  # a tick evaluated twice (daemon restart): the same job
        (request,) = first.run_requests
        assert [r.run_key for r in again.run_requests] == [request.run_key]
        (export,) = client.export_jobs.list()["records"]
        assert export["properties"]["scheduleId"] == schedule["id"] and export["status"] == "PROCESSING"

        # The run the tick asked for, as the daemon would launch it.
        with settings_environment(settings):
            job_def = load_definitions(settings).resolve_job_def(request.job_name)
            result = job_def.execute_in_process(
                instance=instance,
                asset_selection=list(request.asset_selection),
                tags=request.tags,
                raise_on_error=False,
            )
        assert result.success
        done = client.export_jobs.get(export["id"])  # reading the job settles it from its finished run
        assert done["status"] == "SUCCEEDED", done.get("errors")
        batch = client.datasets.get_batch(done["destination"]["batchId"])
        assert batch["rowCount"] == 3  # ann, cat, fay


@pytest.mark.slow
def test_a_killed_export_run_ends_failed_and_a_retry_succeeds(tmp_path):
    home = tmp_path / "home"
    server = start(home)
    try:
        with SegmentationClient(base_url=server.url, timeout=300) as client:
            scenario = Scenario(client, tmp_path).load()
            out = client.datasets.create({"name": "killed", "schema": PROFILE})
            body = {
                "filter": {"segments": [{"segmentId": i} for i in scenario.ids.values()]},
                "destination": {"datasetId": out["id"]},
                "schema": PROFILE,
                "evaluationInfo": {"segmentation": True},
            }
            job = client.export_jobs.create(body)
            deadline = time.monotonic() + 120
            while not (current := client.export_jobs.get(job["id"])).get("computeGatewayJobId"):
                assert current["status"] in ("NEW", "PROCESSING") and time.monotonic() < deadline, current
                time.sleep(0.05)
            assert current["status"] == "PROCESSING"
            # Killed at once: on a quiet machine this small export ends within a second of its launch.
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=30)
        server = start(home)
        with SegmentationClient(base_url=server.url, timeout=300) as client:
            # Killed before its worker was named, a launched run is given reconciliation's 120 s grace.
            deadline = time.monotonic() + 300
            while (ended := client.export_jobs.get(job["id"]))["status"] == "PROCESSING":
                assert time.monotonic() < deadline, ended
                time.sleep(0.5)
            assert ended["status"] == "FAILED", ended
            # The run's process is gone (or, killed before Dagster recorded the run, the run never existed).
            assert ended["errors"][0]["code"] in ("SEGP-200501", "SEGP-200404"), ended["errors"]
            assert client.datasets.get(out["id"])["batchCount"] == 0
            retry = client.export_jobs.create(body, wait=True, poll=0.2)
            assert retry["status"] == "SUCCEEDED", retry.get("errors")
            assert client.datasets.get(out["id"])["batchCount"] == 1
    finally:
        stop(server.process)


def test_the_sensors_launch_new_exports_once_and_write_outcomes_back(tmp_path, monkeypatch):
    from segmentation_pipelines.defs.exports import sensors

    home = tmp_path / "home"
    monkeypatch.setenv("SEGMENTATION_HOME", str(home))
    with SegmentationClient(home=home) as client:
        scenario = Scenario(client, tmp_path).load()
        out = client.datasets.create({"name": "sensed", "schema": PROFILE})
        body = {
            "filter": {"segments": [{"segmentId": scenario.ids["loyal"]}]},
            "destination": {"datasetId": out["id"]},
            "schema": PROFILE,
            "evaluationInfo": {"segmentation": True},
        }
        job = client.export_jobs.create(body)
        assert job["status"] == "NEW"
        settings = client.ctx.settings
        instance = instance_for(settings)
        result = sensors.export_job_launcher(dg.build_sensor_context(instance=instance))
        (request,) = result.run_requests
        assert request.run_key == f"{job['id']}:1" and request.job_name == "export_job"
        keys = {"/".join(k.path) for k in request.asset_selection}
        assert {
            f"segment/loyal__{scenario.ids['loyal'].replace('-', '')[:8]}",
            f"exports/{out['id']}",
        } <= keys
        assert isinstance(
            sensors.export_job_launcher(dg.build_sensor_context(instance=instance)), dg.SkipReason
        )
        assert client.export_jobs.get(job["id"])["status"] == "PROCESSING"

        with settings_environment(settings):
            job_def = load_definitions(settings).resolve_job_def(request.job_name)
            run = job_def.execute_in_process(
                instance=instance, asset_selection=list(request.asset_selection), tags=request.tags
            )
        context = dg.build_run_status_sensor_context(
            sensor_name="export_job_succeeded",
            dagster_event=run.get_run_success_event(),
            dagster_instance=instance,
            dagster_run=run.dagster_run,
        )
        sensors.export_job_succeeded(context)
        done = client.export_jobs.get(job["id"])
        assert done["status"] == "SUCCEEDED" and done["computeGatewayJobId"]["exportJob"] == run.run_id
        assert done["metrics"]["totalExportedProfileCounter"] == 3
        # The export asset is downstream of the segment it read, and recorded the export.
        materialization = instance.get_latest_materialization_event(dg.AssetKey(["exports", out["id"]]))
        assert materialization.asset_materialization.metadata["exported_profiles"].value == 3


def test_an_export_whose_assets_are_not_loaded_waits_then_fails_naming_them(tmp_path, monkeypatch):
    """A NEW export whose segment and destination assets the loaded code location lacks (created after it loaded)
    is not launched: it waits (a reload is requested) and, past the grace period, ends FAILED with SEGP-200409
    naming the assets, so it is never stuck NEW."""
    from segmentation_pipelines.defs import run_tracking
    from segmentation_pipelines.defs.exports import sensors

    home = tmp_path / "home"
    monkeypatch.setenv("SEGMENTATION_HOME", str(home))
    with SegmentationClient(home=home) as client:
        scenario = Scenario(client, tmp_path).load()
        out = client.datasets.create({"name": "not-loaded", "schema": PROFILE})
        body = {
            "filter": {"segments": [{"segmentId": scenario.ids["loyal"]}]},
            "destination": {"datasetId": out["id"]},
            "schema": PROFILE,
        }
        job = client.export_jobs.create(body)
        instance = instance_for(client.ctx.settings)
        # The code location as loaded before any of this existed.
        stale = dg.Definitions().get_repository_def()

        waiting = sensors.export_job_launcher(
            dg.build_sensor_context(instance=instance, repository_def=stale)
        )
        assert isinstance(waiting, dg.SkipReason)
        assert waiting.skip_message == "1 NEW export job(s) wait for a reload."
        assert client.export_jobs.get(job["id"])["status"] == "NEW"

        monkeypatch.setattr(run_tracking, "NOT_LOADED_GRACE_S", -1)  # the grace period is over
        sensors.export_job_launcher(dg.build_sensor_context(instance=instance, repository_def=stale))
        failed = client.export_jobs.get(job["id"])
        assert failed["status"] == "FAILED"
        (error,) = failed["errors"]
        assert error["code"] == "SEGP-200409"
        assert f"exports/{out['id']}" in error["msg"] and "reload it" in error["msg"]
        idle = sensors.export_job_launcher(dg.build_sensor_context(instance=instance, repository_def=stale))
        assert isinstance(idle, dg.SkipReason) and idle.skip_message == "No NEW export jobs."
