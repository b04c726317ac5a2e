"""The schedule audience operations through the client, in-process and over HTTP: add-audiences,
remove-audiences, audience-map and trigger, with Adobe's OpenAPI shapes, and their errors."""

from __future__ import annotations

import json

import pytest
from contract import assert_matches
from fastapi.testclient import TestClient

from segmentation_pipelines import SegmentationClient, SegmentationError
from segmentation_pipelines.api import create_app


def with_profiles(settings, tmp_path) -> None:
    """A profile dataset with one batch, so definitions over ``homeAddress`` check against its schema."""
    rows = tmp_path / "crm.jsonl"
    rows.write_text(
        json.dumps(
            {
                "identityMap": {"Email": [{"id": "a@x.com", "primary": True}]},
                "homeAddress": {"countryCode": "US"},
            }
        )
        + "\n"
    )
    local = SegmentationClient(home=settings.home, sandbox="prod")
    dataset = local.datasets.create({"name": "crm", "xdmClass": "_xdm.context.profile"})
    local.datasets.ingest(dataset["id"], [str(rows)])


def definition(name: str, pql: str = 'homeAddress.countryCode = "US"', **extra) -> dict:
    return {"name": name, "expression": {"type": "PQL", "format": "pql/text", "value": pql}, **extra}


@pytest.fixture(params=["local", "http"])
def client(request, settings, monkeypatch, tmp_path):
    monkeypatch.setenv("SEGMENTATION_HOME", str(settings.home))
    with_profiles(settings, tmp_path)
    if request.param == "local":
        yield SegmentationClient(home=settings.home, sandbox="prod")
        return
    with TestClient(create_app(settings)) as http:
        yield SegmentationClient(http_client=http, sandbox="prod")


def batch_schedule(client, name: str, segments: list[str], schedule: str = "0 0 2 * * ?") -> dict:
    return client.schedules.create(
        {
            "name": name,
            "type": "batch_segmentation",
            "schedule": schedule,
            "properties": {"segments": segments},
        }
    )


def test_add_remove_and_map(client):
    a = client.segment_definitions.create(definition("A"))["id"]
    b = client.segment_definitions.create(definition("B"))["id"]
    c = client.segment_definitions.create(definition("C"))["id"]
    nightly = batch_schedule(client, "nightly", [a])
    weekly = batch_schedule(client, "weekly", [c], schedule="0 30 4 ? * MON")

    added = client.schedules.add_audiences({"id": nightly["id"], "segments": [a, b, "nope"]})
    assert_matches(added, "/config/schedules/add-audiences")
    assert added == {
        "added": [b],
        "existing": [a],
        "invalid": ["nope"],
        "segmentCount": {"previous": 1, "current": 2, "diff": 1},
    }
    assert client.schedules.get(nightly["id"])["properties"]["segments"] == [a, b]

    mapped = client.schedules.audience_map({"segments": [a, b, c, "unknown"]})
    assert_matches(mapped, "/config/schedules/audience-map")
    default_id = next(s["id"] for s in client.schedules.list()["children"] if s["name"] == "profile-default")
    # The sandbox's default schedule evaluates "*": every batch definition is on it too.
    assert mapped["audienceMap"] == {
        a: [default_id, nightly["id"]],
        b: [default_id, nightly["id"]],
        c: [default_id, weekly["id"]],
        "unknown": [],
    }
    assert mapped["schedules"][nightly["id"]] == {
        "name": "nightly",
        "schedule": "0 0 2 * * ?",
        "frequency": "daily",
    }
    assert mapped["schedules"][weekly["id"]]["frequency"] == "weekly"

    removed = client.schedules.remove_audiences({"id": nightly["id"], "segments": [a, c]})
    assert_matches(removed, "/config/schedules/remove-audiences")
    assert removed == {
        "removed": [a],
        "notFound": [c],
        "segmentCount": {"previous": 2, "current": 1, "diff": -1},
    }
    assert client.schedules.audience_map({"segments": [a]})["audienceMap"][a] == [default_id]

    # "*" minus one: the default schedule now names every other batch definition.
    out = client.schedules.remove_audiences({"id": default_id, "segments": [b]})
    assert out["removed"] == [b] and out["segmentCount"] == {"previous": 3, "current": 2, "diff": -1}
    assert sorted(client.schedules.get(default_id)["properties"]["segments"]) == sorted([a, c])
    # Adding to "*": already there.
    star = batch_schedule(client, "all", ["*"])
    out = client.schedules.add_audiences({"id": star["id"], "segments": [a]})
    assert out["existing"] == [a] and out["segmentCount"]["diff"] == 0
    assert client.schedules.get(star["id"])["properties"]["segments"] == ["*"]


def test_bad_input_is_named(client):
    a = client.segment_definitions.create(definition("A"))["id"]
    nightly = batch_schedule(client, "nightly", [a])
    cases = [
        (client.schedules.add_audiences, {"segments": [a]}, 400, "id"),
        (client.schedules.add_audiences, {"id": nightly["id"]}, 400, "segments"),
        (client.schedules.add_audiences, {"id": nightly["id"], "segments": [a, 7]}, 400, "segments[1]"),
        (client.schedules.remove_audiences, {"id": nightly["id"], "segments": []}, 400, "segments"),
        (client.schedules.add_audiences, {"id": "missing", "segments": [a]}, 404, "missing"),
        (client.schedules.audience_map, {"segments": "x"}, 400, "segments"),
        (client.schedules.audience_map, [a], 400, "body"),
        (client.schedules.trigger, {}, 400, "id"),
        (client.schedules.trigger, {"id": "missing"}, 404, "missing"),
    ]
    for call, body, status, named in cases:
        with pytest.raises(SegmentationError) as err:
            call(body)
        assert err.value.status == status, (body, err.value.body)
        assert named in err.value.message, (body, err.value.message)
        assert str(status) in err.value.body["errors"]


def test_trigger_creates_one_tracked_scheduler_job_per_call(client):
    a = client.segment_definitions.create(definition("A"))["id"]
    b = client.segment_definitions.create(definition("B"))["id"]
    nightly = batch_schedule(client, "nightly", [a, b])
    first = client.schedules.trigger({"id": nightly["id"]})
    second = client.schedules.trigger({"id": nightly["id"]})
    assert first["id"] != second["id"]
    for job in (first, second):
        assert job["source"] == "scheduler"
        assert job["properties"]["scheduleId"] == nightly["id"]
        assert job["properties"]["trigger"] == "manual"
        assert [s["segmentId"] for s in job["segments"]] == [a, b]
        assert client.segment_jobs.get(job["id"])["status"] == "NEW"  # the launcher sensor picks it up
    listed = client.segment_jobs.list(property=f"properties.scheduleId=={nightly['id']}")
    assert {j["id"] for j in listed["children"]} == {first["id"], second["id"]}
    assert first["properties"]["runId"] != second["properties"]["runId"]


def test_export_schedules_have_no_audiences(client):
    export = client.schedules.create(
        {
            "name": "export",
            "type": "export",
            "properties": {"destination": {"datasetId": "ds"}, "schema": {"name": "_xdm.context.profile"}},
        }
    )
    for call in (client.schedules.add_audiences, client.schedules.trigger):
        with pytest.raises(SegmentationError) as err:
            call({"id": export["id"], "segments": ["x"]})
        assert err.value.status == 400 and "batch_segmentation" in err.value.message


def test_post_on_fixed_paths_is_routed(settings):
    with TestClient(create_app(settings)) as http:
        response = http.post("/data/core/ups/config/schedules/audience-map", json={"segments": ["x"]})
        assert response.status_code == 200, response.text
        assert response.json() == {"audienceMap": {"x": []}, "schedules": {}}
