"""Ticks of the Dagster schedules built from the catalog, with Dagster's schedule test context: a tick at the
scheduled time creates exactly one segment job with the contract's fields and returns its run; re-evaluating the
tick (daemon restart) creates nothing new; an inactive, deleted, changed or export schedule does nothing."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from segmentation_pipelines.defs.schedules import build_schedule, build_schedules
from segmentation_pipelines.service.schedules import dagster_schedule_name, schedule_snapshot
from segmentation_pipelines.service.segment_jobs import SegmentJobsService

from .conftest import add_definition_row

SCHEDULED = dt.datetime(2026, 3, 2, 13, 30, tzinfo=dt.UTC)


def _create(schedules, **overrides):
    body = {
        "name": "nightly",
        "type": "batch_segmentation",
        "properties": {"segments": ["*"]},
        "schedule": "0 30 13 * * ?",
        "state": "active",
        **overrides,
    }
    return schedules.create(body)


def _definition(settings, schedule_id):
    (row,) = [r for r in schedule_snapshot(settings) if r["id"] == schedule_id]
    return build_schedule(row)


def _tick(schedule_def, instance, when=SCHEDULED):
    # A context built from an instance enters its own copy of the instance (on first use of context.log): exit it
    # here, inside the caller's instance_for_test, or Dagster's process-wide defs-state storage is left pointing at
    # a disposed instance (later loads fail with "undefined DagsterInstance weakref").
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as context:
        return schedule_def.evaluate_tick(context)


def test_the_dagster_schedule_mirrors_the_catalog(schedules, settings):
    created = _create(schedules, timezone="Europe/Berlin")
    definition = _definition(settings, created["id"])
    assert definition.name == dagster_schedule_name(created["id"], created["name"])
    assert definition.cron_schedule == "30 13 * * *"
    assert definition.execution_timezone == "Europe/Berlin"
    assert definition.job_name == "segment_job"
    assert definition.default_status == dg.DefaultScheduleStatus.RUNNING
    schedules.update(created["id"], [{"op": "add", "path": "/state", "value": "inactive"}])
    assert _definition(settings, created["id"]).default_status == dg.DefaultScheduleStatus.STOPPED


def test_a_tick_creates_exactly_one_segment_job_and_its_run(schedules, ctx, settings):
    a = add_definition_row(ctx, "a")
    b = add_definition_row(ctx, "b")
    created = _create(schedules, properties={"segments": [a, b]})
    definition = _definition(settings, created["id"])
    jobs = SegmentJobsService(ctx)
    with dg.instance_for_test() as instance:
        data = _tick(definition, instance)
        assert data.skip_message is None
        (request,) = data.run_requests
        (job,) = jobs.list()["children"]
        assert job["source"] == "scheduler"
        assert set(job["properties"]) == {"scheduleId", "runId"}
        assert job["properties"]["scheduleId"] == created["id"]
        scheduled_ms = int(SCHEDULED.timestamp() * 1000)
        assert job["requestId"] == f"{created['id']}-{scheduled_ms}"
        assert [s["segmentId"] for s in job["segments"]] == [a, b]
        assert job["status"] == "QUEUED"  # the schedule launches the run itself (launch=False)
        assert job["evaluationTime"] == "2026-03-02T13:30:00.000Z"  # the scheduled time
        expected = jobs.run_request_for(job["id"])
        assert request.run_key == expected.run_key
        assert request.tags["segmentation/job_id"] == job["id"]
        assert request.tags["segmentation/kind"] == "segment_job"
        assert sorted(k.path for k in request.asset_selection) == sorted(
            list(k) for k in expected.asset_selection
        )

        # the daemon evaluates the same tick again (e.g. after a restart): same job, same run key, nothing new
        again = _tick(definition, instance)
        assert [r.run_key for r in again.run_requests] == [request.run_key]
        assert jobs.list()["_page"]["totalCount"] == 1

        # the next day's tick is a new job
        next_day = _tick(definition, instance, SCHEDULED + dt.timedelta(days=1))
        assert next_day.run_requests[0].run_key != request.run_key
        assert jobs.list()["_page"]["totalCount"] == 2


def test_all_definitions_star(schedules, ctx, settings):
    a = add_definition_row(ctx, "a")
    created = _create(schedules)
    with dg.instance_for_test() as instance:
        (request,) = _tick(_definition(settings, created["id"]), instance).run_requests
    (job,) = SegmentJobsService(ctx).list()["children"]
    assert [s["segmentId"] for s in job["segments"]] == [a]
    assert [k.path for k in request.asset_selection] == [["segment", f"a__{a.replace('-', '')[:8]}"]]


def test_an_inactive_schedule_does_nothing(schedules, ctx, settings):
    add_definition_row(ctx, "a")
    created = _create(schedules, state="inactive")
    definition = _definition(settings, created["id"])
    assert definition.default_status == dg.DefaultScheduleStatus.STOPPED  # the daemon does not tick it
    with dg.instance_for_test() as instance:
        data = _tick(definition, instance)  # even when ticked (e.g. started by hand in the UI)
    assert data.run_requests == [] or not data.run_requests
    assert "inactive" in data.skip_message
    assert SegmentJobsService(ctx).list()["_page"]["totalCount"] == 0


@pytest.mark.parametrize("change", ["deleted", "deactivated", "cron changed"])
def test_a_schedule_changed_after_the_load_does_not_fire(schedules, ctx, settings, change):
    add_definition_row(ctx, "a")
    created = _create(schedules)
    definition = _definition(settings, created["id"])  # loaded before the change
    if change == "deleted":
        schedules.delete(created["id"])
    elif change == "deactivated":
        schedules.update(created["id"], [{"op": "add", "path": "/state", "value": "inactive"}])
    else:
        schedules.update(created["id"], [{"op": "add", "path": "/schedule", "value": "0 0 2 * * ?"}])
    with dg.instance_for_test() as instance:
        data = _tick(definition, instance)
    assert not data.run_requests and data.skip_message
    assert SegmentJobsService(ctx).list()["_page"]["totalCount"] == 0


def test_export_schedules_to_a_missing_dataset_skip_with_a_reason(schedules, ctx, settings):
    request = {"destination": {"datasetId": "ds-1"}, "schema": {"name": "_xdm.context.profile"}}
    created = _create(schedules, type="export", properties=request)
    with dg.instance_for_test() as instance:
        data = _tick(_definition(settings, created["id"]), instance)
    assert not data.run_requests
    assert "dataset 'ds-1' was not found" in data.skip_message  # firing export schedules: tests/exports


def test_star_without_definitions_skips_with_the_reason(schedules, ctx, settings):
    created = _create(schedules)
    with dg.instance_for_test() as instance:
        data = _tick(_definition(settings, created["id"]), instance)
    assert not data.run_requests
    assert "has none" in data.skip_message


def test_rows_without_a_runnable_cron_are_left_out(schedules, settings):
    created = _create(schedules)
    rows = schedule_snapshot(settings)
    broken = [{**r, "dagster_cron": "61 * * * *"} if r["id"] == created["id"] else r for r in rows]
    names = {s.name for s in build_schedules(broken)}
    assert dagster_schedule_name(created["id"], created["name"]) not in names
    assert len(names) == len(rows) - 1
