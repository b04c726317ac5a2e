"""Definitions, audiences and members through SegmentationClient: in-process and over HTTP behave the same."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient

from segmentation_pipelines import SegmentationClient, SegmentationError
from segmentation_pipelines.api import create_app
from segmentation_pipelines.service.segment_evaluation import run_evaluation

from .helpers import definition

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.fixture(params=["local", "http"])
def client(request, store, settings):
    if request.param == "local":
        yield SegmentationClient(home=settings.home, sandbox="prod")
        return
    with TestClient(create_app(settings)) as http:
        yield SegmentationClient(http_client=http, sandbox="prod")


def test_definitions_members_and_errors(client, store):
    defs = client.segment_definitions
    us = defs.create(definition("US", 'homeAddress.countryCode = "US"'))
    assert defs.get(us["id"])["name"] == "US"
    assert [s["id"] for s in defs.list(property="name==US")["segments"]] == [us["id"]]
    assert defs.list(**{"evaluationInfo.batch.enabled": "true"})["page"]["totalCount"] == 1

    with pytest.raises(SegmentationError) as err:
        defs.create(definition("US", 'homeAddress.countryCode = "DE"'))
    assert err.value.status == 422
    with pytest.raises(SegmentationError) as err:
        defs.create(definition("bad", 'homeAddress.countryCode = = "DE"'))
    assert err.value.status == 400
    assert (
        err.value.body["errors"]["400"][0]["line"] == 1 and err.value.body["errors"]["400"][0]["column"] > 0
    )

    top = defs.create(definition("US top", f'inSegment("{us["id"]}") and loyalty.points > 100'))
    with pytest.raises(SegmentationError) as err:
        defs.delete(us["id"])
    assert err.value.status == 400 and "US top" in err.value.message

    run_evaluation(store, [us["id"], top["id"]], T0)
    page = client.audiences.members(us["id"])
    assert page["evaluationTime"] == "2026-03-01T00:00:00.000Z"
    assert sorted(m["identityMap"]["Email"][0]["id"] for m in page["children"]) == ["ann@x.com", "cid@x.com"]
    assert {m["status"] for m in page["children"]} == {"realized"}
    top_members = client.audiences.members(top["id"], evaluation_time="2026-03-01T00:00:00Z")["children"]
    assert [m["identityMap"]["Email"][0]["id"] for m in top_members] == ["ann@x.com"]
    run_evaluation(store, [us["id"]], T0 + dt.timedelta(days=1))
    assert client.audiences.members(us["id"])["children"][0]["status"] == "existing"
    past = client.audiences.members(us["id"], evaluation_time="2026-03-01T06:00:00Z")
    assert past["evaluationTime"] == "2026-03-01T00:00:00.000Z"
    assert {m["status"] for m in past["children"]} == {"realized"}
    with pytest.raises(SegmentationError) as err:
        client.audiences.members(us["id"], evaluation_time="yesterday")
    assert err.value.status == 400 and "evaluationTime" in err.value.message

    bulk = defs.bulk_get({"ids": [{"id": us["id"]}, {"id": top["id"]}]})
    assert set(bulk["results"]) == {us["id"], top["id"]}
    assert defs.convert(definition("x", "loyalty.points > 1"))["expression"]["format"] == "pql/json"


def test_audiences_crud(client, store):
    audiences = client.audiences
    ext = audiences.create(
        {
            "type": "ExternalSegment",
            "name": "CRM upload",
            "audienceId": "crm-1",
            "namespace": "CustomerAudienceUpload",
        }
    )
    assert ext["audienceId"] == "crm-1" and ext["lifecycleState"] == "published"
    assert ext["creationTime"] == ext["updateTime"] and ext["createEpoch"] == ext["creationTime"] // 1000
    assert ext["createdBy"] == ext["lastModifiedBy"] and ext["dependencies"] == []
    seg = audiences.create(
        {
            "type": "SegmentDefinition",
            "name": "Gold",
            "labels": ["core/C1"],
            "expression": {"type": "PQL", "format": "pql/text", "value": 'loyalty.tier = "gold"'},
        }
    )
    assert client.segment_definitions.get(seg["id"])["name"] == "Gold" and seg["labels"] == ["core/C1"]
    # a definition may reference the external audience by its audienceId
    ref = client.segment_definitions.create(
        definition("CRM gold", 'inSegment("crm-1") and loyalty.tier = "gold"')
    )
    assert audiences.get(ref["id"])["dependencies"] == [ext["id"]]

    listed = audiences.list(sort="name:asc", limit="2")
    assert [a["name"] for a in listed["children"]] == ["CRM gold", "CRM upload"]
    assert listed["_page"]["totalCount"] == 3 and listed["_page"]["next"] == 2
    assert {a["name"] for a in audiences.list(name="gold")["children"]} == {"Gold", "CRM gold"}

    patched = audiences.patch(seg["id"], [{"op": "add", "path": "/description", "value": "gold tier"}])
    assert patched["description"] == "gold tier"
    assert client.segment_definitions.get(seg["id"])["description"] == "gold tier"
    renamed = audiences.update(ext["id"], {"name": "CRM upload v2", "type": "ExternalSegment"})
    assert renamed["name"] == "CRM upload v2" and renamed["audienceId"] == "crm-1"
    with pytest.raises(SegmentationError) as err:
        audiences.update(ext["id"], {"name": "x", "namespace": "AAM"})
    assert err.value.status == 400 and "immutable" in err.value.message
    with pytest.raises(SegmentationError) as err:
        audiences.patch(seg["id"], [{"op": "add", "path": "/lifecycleState", "value": "archived"}])
    assert err.value.status == 400
    with pytest.raises(SegmentationError) as err:
        audiences.delete(ext["id"])  # "CRM gold" reads it
    assert err.value.status == 400

    assert (
        audiences.bulk_get({"ids": [{"id": seg["id"]}, {"id": "nope"}]})["results"][seg["id"]]["name"]
        == "Gold"
    )
    client.segment_definitions.delete(ref["id"])
    assert audiences.delete(ext["id"]) is None
    assert audiences.delete(seg["id"]) is None
    with pytest.raises(SegmentationError) as err:
        client.segment_definitions.get(seg["id"])
    assert err.value.status == 404


@pytest.mark.parametrize(
    "when, named",
    [
        ("2019-12-31T12:00:00Z", "must be after 2020-01-01"),
        ("2999-01-01T00:00:00Z", "must not be later than"),
    ],
)
def test_an_evaluation_time_without_an_evaluation_day_is_refused(client, store, when, named):
    us = client.segment_definitions.create(definition("US", 'homeAddress.countryCode = "US"'))["id"]
    with pytest.raises(SegmentationError) as err:
        client.segment_jobs.create([{"segmentId": us}], evaluation_time=when)
    assert err.value.status == 400 and "evaluation_time" in str(err.value) and named in str(err.value)
    assert client.segment_jobs.list()["children"] == []  # nothing stored
