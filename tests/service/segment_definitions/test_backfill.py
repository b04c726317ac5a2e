"""Audiences as of past days, from Dagster: a backfill of two evaluation-day partitions, launched through Dagster's
own GraphQL API (``launchPartitionBackfill``, what the UI's "Materialize" -> partitions dialog calls) against a real
``segmentation-pipelines dev`` (webserver + daemon), gives the members that segment jobs at those times give (the
public client over HTTP), and leaves the latest membership as it was. Also checked there: the segment assets are
named after their definitions, partitioned by evaluation day, with member counts on each day's materialization.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from running import graphql, serving, wait_for

from segmentation_pipelines import SegmentationClient

BUY = "commerce.purchases"
DAYS = ["2026-03-09", "2026-03-10"]  # evaluated as of their ends: 03-10 00:00 and 03-11 00:00 UTC
AS_OF = {day: datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1) for day in DAYS}
# who -> days before 2026-03-10 00:00 of their purchase
PURCHASES = {"ann": 6.5, "bob": 1, "cat": 20, "fay": 3}

ASSETS = """{ assetNodes(group: {groupName: "segments", repositoryName: "__repository__",
  repositoryLocationName: "segmentation_pipelines"}) { assetKey { path } partitionKeysByDimension { name } } }"""
LAUNCH = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message stack } } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
  ... on PartitionBackfill { status } ... on PythonError { message } } }"""
RUNS = """query($id: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
  ... on Runs { results { status tags { key value } } } } }"""
MATERIALIZATIONS = """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset {
  assetMaterializations(limit: 10) { partition runId metadataEntries { label
  ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } } } } } }"""


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _load(client: SegmentationClient, folder: Path) -> dict[str, str]:
    people = client.datasets.create({"name": "crm", "schema": {"name": "_xdm.context.profile"}})
    events = client.datasets.create({"name": "web", "schema": {"name": "_xdm.context.experienceevent"}})
    rows = [
        {"identityMap": {"Email": [{"id": f"{who}@example.com", "primary": True}]}, "loyalty": {"points": 10}}
        for who in ("ann", "bob", "cat", "dan", "fay")
    ]
    base = datetime(2026, 3, 10, tzinfo=UTC)
    bought = [
        {
            "_id": f"{who}-buy",
            "timestamp": (base - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventType": BUY,
            "identityMap": {"Email": [{"id": f"{who}@example.com", "primary": True}]},
        }
        for who, days in PURCHASES.items()
    ]
    client.datasets.upload(people["id"], [_write(folder / "crm.jsonl", rows)])
    client.datasets.upload(events["id"], [_write(folder / "web.jsonl", bought)])
    pql = f'chain(xEvent, timestamp, [A: WHAT(eventType = "{BUY}") WHEN(< 7 days before now)])'
    recent = client.segment_definitions.create(
        {"name": "Recent buyers", "expression": {"type": "PQL", "format": "pql/text", "value": pql}}
    )
    return {"Recent buyers": recent["id"]}


def _members(client: SegmentationClient, audience_id: str, when: datetime | None = None) -> tuple:
    at = {"evaluation_time": when.strftime("%Y-%m-%dT%H:%M:%SZ")} if when else {}
    page = client.audiences.members(audience_id, limit=1000, **at)
    current = sorted(r["identityMap"]["Email"][0]["id"] for r in page["children"] if r["status"] != "exited")
    return page["evaluationTime"], current


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_backfill_of_two_past_days_matches_segment_jobs_and_keeps_the_latest(tmp_path):
    home = tmp_path / "home"
    with (
        serving(home, "dev", startup_s=240) as (url, dagster_url),
        SegmentationClient(base_url=url, timeout=300) as client,
    ):
        ids = _load(client, tmp_path)
        recent = ids["Recent buyers"]
        latest_job = client.segment_jobs.create([{"segmentId": recent}], wait=True, poll=0.5)
        assert latest_job["status"] == "SUCCEEDED", latest_job.get("errors")
        latest = _members(client, recent)
        assert latest[1] == []  # nobody bought in the last 7 days of "now"

        # The UI reads by name: the asset is "segment / Recent_buyers__<id8>", partitioned by evaluation day.
        def loaded():
            nodes = graphql(dagster_url, ASSETS)["assetNodes"]
            return [n for n in nodes if n["assetKey"]["path"][1].startswith("Recent_buyers__")]

        (node,) = wait_for(loaded, 120, "the segment asset in the webserver")
        key = node["assetKey"]["path"]
        assert key == ["segment", f"Recent_buyers__{recent.replace('-', '')[:8]}"]

        launched = graphql(
            dagster_url,
            LAUNCH,
            {"p": {"partitionNames": DAYS, "assetSelection": [{"path": key}], "fromFailure": False}},
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill = launched["backfillId"]

        def finished():
            status = graphql(dagster_url, BACKFILL, {"id": backfill})["partitionBackfillOrError"]["status"]
            return status if status not in ("REQUESTED", "CANCELING", "FAILING") else None

        status = wait_for(finished, 600, "the backfill")
        runs = graphql(dagster_url, RUNS, {"id": backfill})["runsOrError"]["results"]
        assert status in ("COMPLETED", "COMPLETED_SUCCESS"), (status, runs)
        assert sorted(
            t["value"] for r in runs for t in r["tags"] if t["key"] == "dagster/partition"
        ) == DAYS and {r["status"] for r in runs} == {"SUCCESS"}

        # Each day's materialization carries its members and its own evaluation time.
        mats = graphql(dagster_url, MATERIALIZATIONS, {"key": {"path": key}})["assetOrError"]
        by_day = {
            m["partition"]: {e["label"]: e.get("intValue", e.get("text")) for e in m["metadataEntries"]}
            for m in mats["assetMaterializations"]
            if m["partition"] in DAYS
        }
        assert by_day["2026-03-09"]["evaluation_time"] == "2026-03-10T00:00:00.000Z"
        assert by_day["2026-03-09"]["dagster/row_count"] == 3  # ann (6.5 days), bob, fay
        assert by_day["2026-03-10"]["dagster/row_count"] == 2  # ann's purchase is 7.5 days old by then

        backfilled = {day: _members(client, recent, AS_OF[day]) for day in DAYS}
        assert backfilled["2026-03-09"] == (
            "2026-03-10T00:00:00.000Z",
            ["ann@example.com", "bob@example.com", "fay@example.com"],
        )
        assert backfilled["2026-03-10"] == (
            "2026-03-11T00:00:00.000Z",
            ["bob@example.com", "fay@example.com"],
        )
        assert _members(client, recent) == latest  # the latest membership is untouched

        # Segment jobs at the same times (the public API's point-in-time evaluation) give the same members.
        for day in DAYS:
            job = client.segment_jobs.create(
                [{"segmentId": recent}], evaluation_time=AS_OF[day], wait=True, poll=0.5
            )
            assert job["status"] == "SUCCEEDED", job.get("errors")
            assert _members(client, recent, AS_OF[day]) == backfilled[day]
        assert _members(client, recent) == latest
