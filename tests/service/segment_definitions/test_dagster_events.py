"""Dagster's own cost per segment definition (issue 18, docs/performance.md "Dagster's share"): what a segment job's
run writes to the Dagster instance's event log for each definition it evaluates, counted through the instance API on
real runs.

Each event is a write to the instance (on the embedded SQLite instance, its own transactions), so the count per
definition is what Dagster's share grows with. Per definition a run writes exactly three: the materialization
planned at launch, the step output (which the publish-gate checks and the exports downstream in the same run wait
on, and which carries the data-version lineage) and the materialization with its metadata. No I/O-manager events
(``HANDLED_OUTPUT``, ``LOADED_INPUT``: the asset stores no output), no log line per definition.
"""

from __future__ import annotations

from collections import Counter

import dagster as dg

from segmentation_pipelines.launcher import TAG_JOB_ID
from segmentation_pipelines.service.segment_jobs import SegmentJobsService
from segmentation_pipelines.service.services import Services

from .helpers import definition

PER_DEFINITION = {"ASSET_MATERIALIZATION_PLANNED": 1, "STEP_OUTPUT": 1, "ASSET_MATERIALIZATION": 1}


def _run_events(ctx, job_id: str) -> tuple[list[dg.EventLogEntry], dg.DagsterRun]:
    instance = ctx.launcher.instance
    (run,) = instance.get_runs(filters=dg.RunsFilter(tags={TAG_JOB_ID: job_id}))
    entries, cursor = [], None
    while True:
        page = instance.get_records_for_run(run.run_id, cursor=cursor, limit=1000)
        entries += [r.event_log_entry for r in page.records]
        cursor = page.cursor
        if not page.has_more:
            return entries, run


def _job(ctx, ids: list[str], when: str) -> tuple[list[dg.EventLogEntry], dg.DagsterRun]:
    job = SegmentJobsService(ctx).create([{"segmentId": i} for i in ids], evaluation_time=when, wait=True)
    assert job["status"] == "SUCCEEDED", job.get("errors")
    return _run_events(ctx, job["id"])


def _by_type(entries: list[dg.EventLogEntry]) -> Counter:
    return Counter(e.dagster_event.event_type_value if e.is_dagster_event else "log message" for e in entries)


def test_a_segment_job_writes_three_events_per_definition(store):
    svc = Services(store).segment_definitions
    countries = ["US", "DE", "US", "DE", "FR", "US"]
    ids = [
        svc.create(definition(f"Events {i}", f'homeAddress.countryCode = "{c}"'))["id"]
        for i, c in enumerate(countries)
    ]
    # Reference one from another: lineage inside the run (a dependency evaluated in the same step).
    ids.append(svc.create(definition("Events rich", f'inSegment("{ids[0]}") and loyalty.points > 100'))["id"])

    # The same shape (two evaluation stages: the referenced one, then the one referencing it), 2 and 7 definitions.
    small, _ = _job(store, [ids[0], ids[-1]], "2026-03-01T00:00:00Z")
    large, run = _job(store, ids, "2026-03-01T00:00:00Z")

    # What grows with the definitions: exactly three events for each (the rest is the run's own, a constant).
    grown = _by_type(large)
    grown.subtract(_by_type(small))
    added = len(ids) - 2
    assert +grown == Counter({k: v * added for k, v in PER_DEFINITION.items()}), _by_type(large)

    # ... and they belong to the definitions: one of each per materialized asset, on its evaluation day.
    keys = {dg.AssetKey(k) for k in (svc.get(i)["dagster"]["assetKey"].split("/") for i in ids)}
    per_key: dict[dg.AssetKey, Counter] = {k: Counter() for k in keys}
    for entry in large:
        event = entry.dagster_event
        if entry.is_dagster_event and event.asset_key in per_key:
            per_key[event.asset_key][event.event_type_value] += 1
    outputs = Counter(
        e.dagster_event.event_specific_data.step_output_handle.output_name
        for e in large
        if e.is_dagster_event and e.dagster_event.event_type_value == "STEP_OUTPUT"
    )
    assert len(outputs) == len(ids) and set(outputs.values()) == {1}
    for key, counts in per_key.items():
        assert counts == Counter({"ASSET_MATERIALIZATION_PLANNED": 1, "ASSET_MATERIALIZATION": 1}), (
            key,
            counts,
        )
    assert not {"HANDLED_OUTPUT", "LOADED_INPUT", "STEP_INPUT"} & set(_by_type(large))

    # What the UI shows per audience is still there: a materialization of its partition, with its counts.
    instance = store.launcher.instance
    for key in keys:
        materialization = instance.get_latest_materialization_event(key).asset_materialization
        assert materialization.partition == "2026-02-28"
        assert {"dagster/row_count", "members", "members_delta", "member_counts"} <= set(
            materialization.metadata
        )
    assert run.status == dg.DagsterRunStatus.SUCCESS

    # The next day: each audience's series (read for all of them at once) holds both evaluations, oldest first.
    _job(store, [ids[0], ids[-1]], "2026-03-02T00:00:00Z")
    for ident in (ids[0], ids[-1]):
        key = dg.AssetKey(svc.get(ident)["dagster"]["assetKey"].split("/"))
        metadata = instance.get_latest_materialization_event(key).asset_materialization.metadata
        series = [r.data for r in metadata["member_counts"].value.records]
        assert [r["evaluation_time"] for r in series] == [
            "2026-03-01T00:00:00.000Z",
            "2026-03-02T00:00:00.000Z",
        ]
        assert series[0]["members"] == series[1]["members"] == metadata["members"].value
        assert metadata["members_delta"].value == 0
