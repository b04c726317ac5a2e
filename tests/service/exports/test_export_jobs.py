"""Export jobs end to end through the public client, in-process and over HTTP against a real
``segmentation-pipelines serve`` (its runner runs the exports): evaluate, export with status filters and field
selection, read the batch (DuckDB and Polars, straight from the files the batch lists) and compare with the members;
a segment-per-batch export; a delta export after a second evaluation; paging; a publish gate that blocks, then an
override; a cancel that leaves no batch; bad requests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import duckdb
import polars as pl
import pytest
from running import serving

from segmentation_pipelines import SegmentationClient
from segmentation_pipelines.errors import SegmentationError
from service.segment_jobs.scenario import T1, Scenario, T

PROFILE = {"name": "_xdm.context.profile"}


@pytest.fixture(params=["in-process", "serve"])
def client(request, tmp_path) -> Iterator[SegmentationClient]:
    home = tmp_path / "home"
    if request.param == "in-process":
        with SegmentationClient(home=home) as local:
            yield local
        return
    with serving(home) as (url, _):
        with SegmentationClient(base_url=url, timeout=300) as remote:
            yield remote


def _rows(client, batch_id: str) -> list[dict]:
    batch = client.datasets.get_batch(batch_id)
    assert batch["status"] == "success" and batch["files"]
    files = batch["files"]
    via_polars = pl.read_parquet(files)
    rows = duckdb.sql(f"SELECT * FROM read_parquet({files!r})").fetchall()
    cols = duckdb.sql(f"SELECT * FROM read_parquet({files!r})").columns
    assert via_polars.height == len(rows) == batch["rowCount"]
    return [dict(zip(cols, r, strict=True)) for r in rows]


def _who(row: dict) -> str:
    (email,) = [v["id"] for e in row["identityMap"] if e["key"] == "Email" for v in e["value"]]
    return email.split("@")[0]


def _export(client, body: dict) -> dict:
    job = client.export_jobs.create(body, wait=True, poll=0.2)
    return job


def test_export_jobs_end_to_end(client, tmp_path):
    scenario = Scenario(client, tmp_path).load()
    ids = scenario.ids
    out = client.datasets.create({"name": "audience-export", "schema": PROFILE})
    day_one = client.segment_jobs.create(
        [{"segmentId": i} for i in ids.values()], evaluation_time=T, wait=True, poll=0.2
    )
    assert day_one["status"] == "SUCCEEDED", day_one.get("errors")

    # Two segments in one batch, two fields: one row per profile, its memberships grouped under "ups".
    job = _export(
        client,
        {
            "fields": "person.name.firstName,loyalty.points",
            "filter": {
                "segments": [{"segmentId": ids["us"]}, {"segmentId": ids["loyal"], "status": ["realized"]}]
            },
            "destination": {"datasetId": out["id"]},
            "schema": PROFILE,
        },
    )
    assert job["status"] == "SUCCEEDED", job.get("errors")
    assert isinstance(job["id"], int) and job["jobType"] == "BATCH"
    rows = {_who(r): r for r in _rows(client, job["destination"]["batchId"])}
    members = set(scenario.members("us")) | set(scenario.members("loyal"))
    assert set(rows) == members == {"ann", "bob", "eve", "cat", "fay"}
    assert rows["ann"]["person"] == {"name": {"firstName": "Ann"}} and rows["ann"]["loyalty"] == {
        "points": 500
    }
    assert "homeAddress" not in rows["ann"]  # not asked for
    assert set(rows["ann"]["segmentMembership"]["ups"]) == {ids["us"], ids["loyal"]}
    entry = rows["ann"]["segmentMembership"]["ups"][ids["us"]]
    assert entry["status"] == "realized" and entry["lastQualificationTime"] == T.replace(tzinfo=None)
    assert set(rows["cat"]["segmentMembership"]["ups"]) == {ids["loyal"]}
    metrics = job["metrics"]
    assert metrics["totalExportedProfileCounter"] == 5
    assert metrics["exportedProfileByNamespaceCounter"] == {"Email": 5, "CRMID": 5}
    for phase in ("totalTime", "profileExportTime"):
        assert (
            metrics[phase]["totalTimeInMs"] == metrics[phase]["endTimeInMs"] - metrics[phase]["startTimeInMs"]
        )

    # One batch per segment.
    per_segment = _export(
        client,
        {
            "filter": {"segments": [{"segmentId": ids["recent"]}, {"segmentId": ids["frequent"]}]},
            "destination": {"datasetId": out["id"], "segmentPerBatch": True},
            "schema": PROFILE,
        },
    )
    assert per_segment["status"] == "SUCCEEDED", per_segment.get("errors")
    batches = {b["segmentId"]: b["batchId"] for b in per_segment["destination"]["batches"]}
    assert set(batches) == {ids["recent"], ids["frequent"]}
    assert {_who(r) for r in _rows(client, batches[ids["recent"]])} == {"ann", "bob", "fay"}
    assert {_who(r) for r in _rows(client, batches[ids["frequent"]])} == {"eve"}
    assert per_segment["metrics"]["totalExportedProfileCounter"] == 4

    # The delta recipe: after the next evaluation, realized + exited since the exported evaluation.
    (exported,) = [e for e in per_segment["segmentEvaluations"] if e["segmentId"] == ids["recent"]]
    scenario.add_day_two_events()
    day_two = client.segment_jobs.create([{"segmentId": "*"}], evaluation_time=T1, wait=True, poll=0.2)
    assert day_two["status"] == "SUCCEEDED", day_two.get("errors")
    # The recipe of docs/exports.md: one millisecond after the evaluation the previous export exported.
    since = datetime.fromisoformat(exported["evaluationTime"].replace("Z", "+00:00"))
    assert since == T
    after = (since + timedelta(milliseconds=1)).isoformat()
    delta = _export(
        client,
        {
            "filter": {
                "segments": [{"segmentId": ids["recent"], "status": ["realized", "exited"]}],
                "segmentQualificationTime": {"startTime": after},
            },
            "destination": {"datasetId": out["id"]},
            "schema": PROFILE,
        },
    )
    assert delta["status"] == "SUCCEEDED", delta.get("errors")
    statuses = {
        _who(r): r["segmentMembership"]["ups"][ids["recent"]]["status"]
        for r in _rows(client, delta["destination"]["batchId"])
    }
    assert statuses == {"ann": "exited", "dan": "realized", "eve": "realized"}

    # Listing: newest first, cursor paging, status filter; the exports never fed the profile store.
    page = client.export_jobs.list(limit=2)
    assert [r["id"] for r in page["records"]] == [delta["id"], per_segment["id"]]
    assert (
        page["link"]["next"]
        and page["page"]["pageOffset"] == f"{per_segment['creationTime']}_{per_segment['id']}"
    )
    rest = client.export_jobs.list(limit=2, offset=page["page"]["pageOffset"])
    assert [r["id"] for r in rest["records"]] == [job["id"]] and not rest["link"]
    assert client.export_jobs.list(status="FAILED")["records"] == []
    assert len(client.export_jobs.list(status="SUCCEEDED,NEW")["records"]) == 3
    assert client.datasets.get(out["id"])["batchCount"] == 4
    assert "segmentMembership" not in client.datasets.schema()["profile"]
    assert client.export_jobs.get(job["id"]) == client.export_jobs.list(limit=3)["records"][2]


def test_a_publish_gate_blocks_the_export_until_overridden(client, tmp_path):
    scenario = Scenario(client, tmp_path).load()
    us = scenario.ids["us"]
    out = client.datasets.create({"name": "gated", "schema": PROFILE})
    gates = client.export_jobs.set_gates(us, {"minMembers": 10})
    assert gates["checks"] == {"minMembers": "publish_gate_min_members"}
    day_one = client.segment_jobs.create([{"segmentId": us}], evaluation_time=T, wait=True, poll=0.2)
    assert day_one["status"] == "SUCCEEDED", day_one.get("errors")
    (status,) = client.export_jobs.get_gates(us)["status"]
    assert status["check"] == "publish_gate_min_members" and not status["passed"]

    body = {
        "filter": {"segments": [{"segmentId": us}]},
        "destination": {"datasetId": out["id"]},
        "schema": PROFILE,
    }
    refused = _export(client, body)
    assert refused["status"] == "FAILED"
    assert any("publish_gate_min_members" in e["msg"] for e in refused["errors"]), refused["errors"]
    assert client.datasets.get(out["id"])["batchCount"] == 0

    # Evaluating in the same run: the blocking asset check stops the export step.
    evaluated = _export(client, {**body, "evaluationInfo": {"segmentation": True}})
    assert evaluated["status"] == "FAILED"
    assert any("publish_gate_min_members" in e["msg"] for e in evaluated["errors"]), evaluated["errors"]

    passed = _export(
        client, {**body, "evaluationInfo": {"segmentation": True}, "publishGates": {"override": True}}
    )
    assert passed["status"] == "SUCCEEDED", passed.get("errors")
    assert {_who(r) for r in _rows(client, passed["destination"]["batchId"])} == {"ann", "bob", "eve"}


def test_a_cancelled_export_leaves_no_batch(client, tmp_path):
    scenario = Scenario(client, tmp_path).load()
    out = client.datasets.create({"name": "cancelled", "schema": PROFILE})
    body = {
        "filter": {"segments": [{"segmentId": scenario.ids["us"]}]},
        "destination": {"datasetId": out["id"]},
        "schema": PROFILE,
        "evaluationInfo": {"segmentation": True},
    }
    job = client.export_jobs.create(body)
    assert job["status"] == "NEW"
    assert client.export_jobs.cancel(job["id"]) == {
        "status": True,
        "message": "Export job has been marked for cancelling",
    }
    deadline = time.monotonic() + 120
    while (current := client.export_jobs.get(job["id"]))["status"] not in (
        "CANCELLED",
        "FAILED",
        "SUCCEEDED",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert current["status"] == "CANCELLED"
    assert client.datasets.get(out["id"])["batchCount"] == 0
    with pytest.raises(SegmentationError) as raised:
        client.export_jobs.cancel(job["id"])
    assert raised.value.status == 409


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema": None}, "schema.name: required"),
        ({"destination": {}}, "destination.datasetId: required"),
        ({"destination": {"datasetId": "nope"}}, "dataset 'nope' was not found"),
        (
            {"filter": {"segments": [{"segmentId": "nope"}]}},
            "filter.segments[0].segmentId: segment definition 'nope'",
        ),
        (
            {"filter": {"segments": [{"segmentId": "US", "status": ["gone"]}]}},
            "filter.segments[0].status: 'gone'",
        ),
        ({"fields": "person.shoeSize"}, "fields: 'person.shoeSize' is not a field"),
        (
            {"filter": {"segmentQualificationTime": {"startTime": "yesterday"}}},
            "startTime: 'yesterday' is not",
        ),
    ],
)
def test_bad_requests_name_what_is_wrong_and_store_nothing(tmp_path, change, message):
    with SegmentationClient(home=tmp_path / "home") as client:
        scenario = Scenario(client, tmp_path).load()
        out = client.datasets.create({"name": "out", "schema": PROFILE})
        body = {
            "filter": {"segments": [{"segmentId": scenario.ids["us"]}]},
            "destination": {"datasetId": out["id"]},
            "schema": PROFILE,
            **change,
        }
        if change.get("filter", {}).get("segments", [{}])[0].get("segmentId") == "US":
            body["filter"]["segments"][0]["segmentId"] = scenario.ids["us"]
        with pytest.raises(SegmentationError) as raised:
            client.export_jobs.create(body)
        assert raised.value.status == 400 and message in str(raised.value.body), raised.value.body
        assert client.export_jobs.list()["records"] == []


def test_folder_exports_and_the_profile_filters(tmp_path):
    import json
    from datetime import UTC, datetime

    with SegmentationClient(home=tmp_path / "home") as client:
        scenario = Scenario(client, tmp_path).load()
        zed = {
            "_id": "zed-1",
            "timestamp": "2026-03-09T10:00:00Z",
            "eventType": "web.webpagedetails.pageViews",
            "identityMap": {"ECID": [{"id": "zed-ecid", "primary": True}]},
        }
        (tmp_path / "zed.jsonl").write_text(json.dumps(zed) + "\n")
        client.datasets.ingest(scenario.events["id"], [str(tmp_path / "zed.jsonl")])  # known from events only
        us = scenario.ids["us"]
        assert (
            client.segment_jobs.create([{"segmentId": us}], evaluation_time=T, wait=True)["status"]
            == "SUCCEEDED"
        )

        # Extension: a folder of CSV files (nested values as JSON text).
        folder = tmp_path / "out"
        folder.mkdir()
        job = client.export_jobs.create(
            {
                "fields": "person.name.firstName",
                "filter": {"segments": [{"segmentId": us}]},
                "destination": {"folder": {"path": str(folder), "format": "csv"}},
                "schema": PROFILE,
            },
            wait=True,
        )
        assert job["status"] == "SUCCEEDED", job.get("errors")
        (path,) = job["destination"]["files"]
        assert path.endswith(".csv") and path.startswith(str(folder)) and not list(folder.glob(".export-*"))
        rows = duckdb.sql(f"SELECT * FROM read_csv('{path}', header = true)").fetchall()
        firsts = sorted(json.loads(r[1])["name"]["firstName"] for r in rows)
        assert firsts == ["Ann", "Bob", "Eve"]
        assert all(json.loads(r[3])["ups"][us]["status"] == "realized" for r in rows)

        # No segment filter: every profile with record data; emptyProfiles adds the event-only one.
        out = client.datasets.create({"name": "everyone", "schema": PROFILE})
        base = {"destination": {"datasetId": out["id"]}, "schema": PROFILE}
        everyone = client.export_jobs.create(base, wait=True)
        assert everyone["metrics"]["totalExportedProfileCounter"] == 6, everyone.get("errors")
        with_empty = client.export_jobs.create({**base, "filter": {"emptyProfiles": True}}, wait=True)
        assert with_empty["metrics"]["totalExportedProfileCounter"] == 7
        assert with_empty["metrics"]["exportedProfileByNamespaceCounter"]["ECID"] == 1

        # fromIngestTimestamp: only profiles updated by a batch ingested after it.
        mark = datetime.now(UTC)
        time.sleep(0.05)
        update = {
            "identityMap": {"Email": [{"id": "ann@example.com", "primary": True}]},
            "loyalty": {"points": 9},
        }
        (tmp_path / "crm2.jsonl").write_text(json.dumps(update) + "\n")
        (crm,) = [d for d in client.datasets.list().values() if d["name"] == "crm"]
        client.datasets.ingest(crm["id"], [str(tmp_path / "crm2.jsonl")])
        since = client.export_jobs.create(
            {**base, "filter": {"fromIngestTimestamp": mark.isoformat().replace("+00:00", "Z")}}, wait=True
        )
        (row,) = _rows(client, since["destination"]["batchId"])
        assert _who(row) == "ann" and row["loyalty"]["points"] == 9


def test_events_are_exported_with_the_profiles_when_asked(tmp_path):
    from datetime import UTC, datetime

    with SegmentationClient(home=tmp_path / "home") as client:
        scenario = Scenario(client, tmp_path).load()
        us = scenario.ids["us"]
        assert (
            client.segment_jobs.create([{"segmentId": us}], evaluation_time=T, wait=True)["status"]
            == "SUCCEEDED"
        )
        out = client.datasets.create({"name": "with-events", "schema": PROFILE})
        body = {
            "fields": "person.name.firstName",
            "filter": {"segments": [{"segmentId": us}]},
            "destination": {"datasetId": out["id"]},
            "schema": PROFILE,
            "additionalFields": {"eventList": {"fields": "eventType,commerce.order.priceTotal"}},
        }
        job = client.export_jobs.create(body, wait=True)
        assert job["status"] == "SUCCEEDED", job.get("errors")
        events = {_who(r): r["events"] for r in _rows(client, job["destination"]["batchId"])}
        assert [e["eventType"] for e in events["ann"]] == ["commerce.productViews", "commerce.purchases"]
        assert events["ann"][1] == {
            "eventType": "commerce.purchases",
            "commerce": {"order": {"priceTotal": 120.0}},
        }
        assert len(events["eve"]) == 3 and set(events["ann"][0]) == {"eventType", "commerce"}

        # Only the events ingested after a time (ingestion time, not event time).
        mark = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        time.sleep(0.05)
        scenario.add_day_two_events()
        body["additionalFields"]["eventList"]["filter"] = {"fromIngestTimestamp": mark}
        later = client.export_jobs.create(body, wait=True)
        events = {_who(r): r["events"] for r in _rows(client, later["destination"]["batchId"])}
        assert events["eve"] == [
            {"eventType": "commerce.purchases", "commerce": {"order": {"priceTotal": 10.0}}}
        ]
        assert events["ann"] is None and events["bob"] is None

        with pytest.raises(SegmentationError, match="'shoeSize' is not a field of the event schema"):
            client.export_jobs.create(
                {**body, "additionalFields": {"eventList": {"fields": "shoeSize"}}},
            )
