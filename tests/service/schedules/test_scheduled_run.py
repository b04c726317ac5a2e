"""A scheduled tick end to end in one process: the code location (loaded from the catalog, as Dagster loads it)
has the schedule; its tick creates the segment job; the tick's run request, executed as Dagster runs it,
materializes exactly the selected segments and completes the job with its metrics."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg

from segmentation_pipelines.service.schedules import dagster_schedule_name
from segmentation_pipelines.service.services import Services

PROFILE = "_xdm.context.profile"
PEOPLE = [
    {
        "identityMap": {"Email": [{"id": f"{name}@x.com", "primary": True}]},
        "homeAddress": {"countryCode": country},
    }
    for name, country in (("ann", "US"), ("bob", "DE"), ("cid", "US"))
]


def _build_store(ctx, tmp_path) -> None:
    """Ingest the people; ingestion builds the profile store."""
    services = Services(ctx)
    path = tmp_path / "crm.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PEOPLE))
    dataset = services.datasets.create({"name": "crm", "xdmClass": PROFILE})
    assert services.datasets.ingest(dataset["id"], [str(path)])["profileStore"]["status"] == "current"


def _definition(name: str, pql: str) -> dict:
    return {
        "name": name,
        "expression": {"type": "PQL", "format": "pql/text", "value": pql},
        "schema": {"name": PROFILE},
    }


def test_a_tick_runs_the_selected_segments(ctx, tmp_path):
    _build_store(ctx, tmp_path)
    services = Services(ctx)
    us = services.segment_definitions.create(_definition("US", 'homeAddress.countryCode = "US"'))
    de = services.segment_definitions.create(_definition("DE", 'homeAddress.countryCode = "DE"'))
    schedule = services.schedules.create(
        {
            "name": "nightly US",
            "type": "batch_segmentation",
            "properties": {"segments": [us["id"]]},
            "schedule": "0 0 1 * * ?",
            "state": "active",
        }
    )
    from segmentation_pipelines.definitions import defs

    repository = defs().get_repository_def()
    schedule_def = repository.get_schedule_def(dagster_schedule_name(schedule["id"], schedule["name"]))
    scheduled = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        # Exited before the instance (see test_ticks._tick): the context enters a copy of the instance.
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=scheduled) as context:
            (request,) = schedule_def.evaluate_tick(context).run_requests
        job = repository.get_job(request.job_name or schedule_def.job_name)
        result = job.execute_in_process(
            instance=instance,
            asset_selection=request.asset_selection,
            tags=request.tags,
            raise_on_error=False,
        )
        assert result.success
        materialized = {
            tuple(e.asset_key.path)
            for e in result.get_asset_materialization_events()
            if e.asset_key is not None
        }
    assert materialized == {("segment", f"{us['name']}__{us['id'].replace('-', '')[:8]}")}  # not DE

    (segment_job,) = services.segment_jobs.list()["children"]
    assert segment_job["source"] == "scheduler"
    assert segment_job["properties"]["scheduleId"] == schedule["id"]
    assert segment_job["status"] == "QUEUED"  # the run was not launched through Dagster's run launcher here
    finished = services.segment_jobs.get(segment_job["id"])
    assert finished["metrics"]["segmentedProfileCounter"] == {us["id"]: 2}
    assert de["id"] not in finished["metrics"]["segmentedProfileCounter"]
