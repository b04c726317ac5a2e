"""External audiences end to end, through the public client only: in-process, and over HTTP against a real
``segmentation-pipelines serve`` subprocess (no daemon: the API's runner launches the ingestion runs).

The world of ``tests/jobs/scenario.py`` (six people with Email identities) is loaded first; a CSV with a typed
enrichment column is dropped into the sandbox's landing area, ingested, read back, used by a segment, changed
(differential run -> exited), expired (TTL -> exited), extended, and finally deleted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from running import serving
from service.segment_jobs.scenario import Scenario

from segmentation_pipelines import SegmentationClient
from segmentation_pipelines.errors import SegmentationError
from segmentation_pipelines.landing import landing_dir
from segmentation_pipelines.settings import get_settings

HEADER = "email,score,tier,since\n"
ROWS = [
    "ann@example.com,1.5,gold,2025-01-01",
    "bob@example.com,2,silver,2025-02-01",
    "cat@example.com,3.25,gold,2025-03-01",
    "zed@example.com,4,bronze,2025-04-01",  # no profile has this identity yet: pending
    "dan@example.com,abc,gold,2025-05-01",  # wrong type
    ",5,gold,2025-06-01",  # missing identity
]
FIELDS = [
    {"name": "email", "type": "string", "identityNs": "Email"},
    {"name": "score", "type": "number"},
    {"name": "tier", "type": "string", "labels": ["C1"]},
    {"name": "since", "type": "date"},
]


@pytest.fixture(params=["in-process", pytest.param("serve", marks=pytest.mark.slow)])
def world(request, tmp_path) -> Iterator[tuple[SegmentationClient, Path]]:
    home = tmp_path / "home"
    landing = landing_dir(get_settings(home=home).landing, get_settings(home=home).default_org, "prod")
    landing.mkdir(parents=True)
    if request.param == "in-process":
        with SegmentationClient(home=home) as local:
            yield local, landing
        return
    with serving(home) as (url, _):
        with SegmentationClient(base_url=url, timeout=300) as remote:
            yield remote, landing


def write_csv(path: Path, rows: list[str]) -> None:
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    # A new modification time even within the same second (the fingerprint and the data filter read it).
    stamp = time.time() + 1
    import os

    os.utime(path, (stamp, stamp))


def members(client, audience_id: str) -> dict[str, dict]:
    page = client.audiences.members(audience_id, limit=100)
    return {row["identityMap"]["Email"][0]["id"].split("@")[0]: row for row in page["children"]}


@pytest.mark.slow
def test_external_audience_end_to_end(world, tmp_path):
    client, landing = world
    Scenario(client, tmp_path).load()
    write_csv(landing / "crm_upload.csv", ROWS)

    body = {
        "name": "CRM upload",
        "description": "gold customers from the CRM",
        "customAudienceId": "crm-gold",
        "fields": FIELDS,
        "sourceSpec": {"params": {"path": "crm_upload.csv", "type": "file", "cloudType": "DLZ"}},
        "ttlInDays": 30,
        "originName": "CUSTOM_UPLOAD",
    }
    created = client.external_audiences.create(body, wait=True)
    operation = client.external_audiences.operation(created["operationId"])
    assert operation["status"] == "SUCCESS", operation
    audience_id = operation["audienceId"]
    assert (created["status"], created["audienceId"]) == ("SUCCESS", audience_id)
    assert created["operationDetails"]["name"] == "CRM upload"  # the request, echoed
    (first,) = client.external_audiences.runs(audience_id)["runs"]
    assert first["status"] == "SUCCESS"
    assert [(d["stage"], d["status"]) for d in first["details"]] == [
        ("DATASET_INGEST", "SUCCESS"),
        ("PROFILE_STORE_INGEST", "SUCCESS"),
    ]
    assert first["metrics"]["rowsRead"] == 6 and first["metrics"]["rowsAccepted"] == 4
    assert first["metrics"]["rejects"] == {"MISSING_IDENTITY": 1, "WRONG_TYPE": 1}
    assert first["metrics"]["pendingRows"] == 1  # zed

    found = members(client, audience_id)
    assert {k: v["status"] for k, v in found.items()} == {
        "ann": "realized",
        "bob": "realized",
        "cat": "realized",
    }
    assert found["ann"]["payload"] == {"score": 1.5, "tier": "gold", "since": "2025-01-01"}
    qualified, valid = found["ann"]["lastQualificationTime"], found["ann"]["validUntil"]
    assert _ms(valid) - _ms(qualified) == 30 * 86_400_000

    listed = client.audiences.list(limit=100)["children"]
    (view,) = [a for a in listed if a["id"] == audience_id]
    assert view["type"] == "ExternalSegment" and view["audienceId"] == "crm-gold"
    assert view["creationTime"] == view["updateTime"] and view["createEpoch"] == view["creationTime"] // 1000

    # A segment reading the external audience and a profile attribute.
    definition = client.segment_definitions.create(
        {
            "name": "us crm gold",
            "schema": {"name": "_xdm.context.profile"},
            "expression": {
                "type": "PQL",
                "format": "pql/text",
                "value": 'inSegment("crm-gold") and homeAddress.countryCode = "US"',
            },
        }
    )
    job = client.segment_jobs.create([{"segmentId": definition["id"]}], wait=True, poll=0.2)
    assert job["status"] == "SUCCEEDED", job.get("errors")
    assert set(members(client, definition["id"])) == {"ann", "bob"}  # cat is in FR

    # A differential run after bob's row left the file: bob exited, the others untouched.
    write_csv(landing / "crm_upload.csv", [r for r in ROWS if not r.startswith("bob")])
    second = client.external_audiences.start_run(audience_id, {"dataFilterStartTime": 0}, wait=True)
    assert second["status"] == "SUCCESS", second
    assert second["differentialIngestion"] is True and second["metrics"]["rowsRemoved"] == 1
    after = members(client, audience_id)
    assert {k: v["status"] for k, v in after.items()} == {
        "ann": "realized",
        "bob": "exited",
        "cat": "realized",
    }
    assert after["ann"]["lastQualificationTime"] == qualified  # unchanged row, unchanged time

    # TTL: rows ingested as of three days ago with a one-day TTL have expired -> exited.
    assert client.external_audiences.update(audience_id, {"ttlInDays": 1})["ttlInDays"] == 1
    old = int(time.time()) - 3 * 86_400
    third = client.external_audiences.start_run(
        audience_id,
        {"dataFilterStartTime": 0, "differentialIngestion": False, "ingestionTime": old},
        wait=True,
    )
    assert third["status"] == "SUCCESS", third
    assert {v["status"] for v in members(client, audience_id).values()} == {"exited"}

    # Extending the TTL re-ingests the last data now: members again, valid for another day.
    assert client.external_audiences.extend_ttl(audience_id) == {
        "audienceId": audience_id,
        "name": "CRM upload",
    }
    extended = members(client, audience_id)
    assert {k: v["status"] for k, v in extended.items()} == {
        "ann": "realized",
        "bob": "exited",
        "cat": "realized",
    }

    # Delete: refused while the definition references it.
    with pytest.raises(SegmentationError) as refused:
        client.external_audiences.delete(audience_id)
    assert refused.value.status == 422 and "us crm gold" in refused.value.message
    client.segment_definitions.delete(definition["id"])
    client.external_audiences.delete(audience_id)
    with pytest.raises(SegmentationError) as gone:
        client.external_audiences.get(audience_id)
    assert gone.value.status == 404


def _ms(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
