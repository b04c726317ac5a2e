"""Segment definitions through the service: create/get/list/update/delete/bulk-get/convert, PQL checked on write."""

from __future__ import annotations

import json

import pytest

from segmentation_pipelines.errors import SegmentationError
from segmentation_pipelines.service.services import Services

from .helpers import definition


@pytest.fixture
def svc(store):
    return Services(store).segment_definitions


def test_create_returns_the_full_definition_with_defaults(svc, store):
    d = svc.create(definition("US gold", 'homeAddress.countryCode = "US" and loyalty.tier = "gold"'))
    assert d["name"] == "US gold"
    assert d["evaluationInfo"] == {
        "batch": {"enabled": True},
        "continuous": {"enabled": False},
        "synchronous": {"enabled": False},
    }
    assert d["mergePolicyId"] == Services(store).merge_policies.ensure_default()["id"]
    assert d["imsOrgId"] == store.org_id and d["sandbox"]["sandboxName"] == "prod"
    assert d["schema"] == {"name": "_xdm.context.profile"}
    assert d["updateEpoch"] == d["updateTime"] // 1000 and d["creationTime"] <= d["updateTime"]
    assert svc.get(d["id"]) == d
    # every definition is an audience with the same id
    audience = Services(store).audiences.get(d["id"])
    assert audience["type"] == "SegmentDefinition" and audience["audienceId"] == d["id"]
    assert audience["expression"] == d["expression"]


def test_bad_pql_is_a_400_naming_line_column_and_reason(svc):
    with pytest.raises(SegmentationError) as err:
        svc.create(definition("broken", 'homeAddress.countryCode = "US" and\n  loyalty.tier = '))
    assert err.value.status == 400
    item = err.value.body["errors"]["400"][0]
    assert item["line"] == 2 and item["column"] > 0
    assert "line 2" in err.value.message

    with pytest.raises(SegmentationError) as err:
        svc.create(definition("unknown field", "person.shoeSize > 3"))
    assert err.value.status == 400
    assert "shoeSize" in err.value.message and err.value.body["errors"]["400"][0]["line"] == 1


def test_names_are_unique_per_sandbox(svc, store, settings):
    svc.create(definition("Dup", "loyalty.points > 10"))
    with pytest.raises(SegmentationError) as err:
        svc.create(definition("dup", "loyalty.points > 20"))
    assert err.value.status == 422 and "already exists" in err.value.message
    # another sandbox may use the name
    from segmentation_pipelines.service.context import ServiceContext

    dev = ServiceContext.create(settings, sandbox="dev")
    Services(dev).merge_policies.ensure_default()
    # dev has no data, so no schema: a profile-only field is refused there, but the name itself is free
    with pytest.raises(SegmentationError) as err:
        Services(dev).segment_definitions.create(definition("Dup", "loyalty.points > 10"))
    assert err.value.status == 400


def test_list_paging_sort_property_and_evaluation_filters(svc):
    ids = []
    for i, name in enumerate(["c-seg", "a-seg", "b-seg"]):
        info = {"batch": {"enabled": i != 1}, "continuous": {"enabled": i == 1}}
        ids.append(svc.create(definition(name, f"loyalty.points > {i}", evaluationInfo=info))["id"])
    page = svc.list(limit="2", sort="name:asc")
    assert [s["name"] for s in page["segments"]] == ["a-seg", "b-seg"]
    assert page["page"] == {
        "totalCount": 3,
        "totalPages": 2,
        "sortField": "name",
        "sort": "asc",
        "pageSize": 2,
        "limit": 2,
    }
    assert "start=2" in page["link"]["next"]
    page2 = svc.list(limit="2", sort="name:asc", start="2")
    assert [s["name"] for s in page2["segments"]] == ["c-seg"] and page2["link"] == {}
    assert [s["name"] for s in svc.list(limit="2", page="1", sort="name:asc")["segments"]] == ["c-seg"]
    assert [s["name"] for s in svc.list(sort="creationTime:desc")["segments"]] == ["b-seg", "a-seg", "c-seg"]
    assert [s["id"] for s in svc.list(property="name==a-seg")["segments"]] == [ids[1]]
    batch = svc.list(**{"evaluationInfo.batch.enabled": "true", "sort": "name"})
    assert [s["name"] for s in batch["segments"]] == ["b-seg", "c-seg"]
    streaming = svc.list(**{"evaluationInfo.continuous.enabled": "true"})
    assert [s["name"] for s in streaming["segments"]] == ["a-seg"]
    with pytest.raises(SegmentationError) as err:
        svc.list(sort="colour:asc")
    assert err.value.status == 400 and "colour" in err.value.message


def test_unknown_merge_policy_and_bad_fields_are_400(svc):
    for body, field in [
        (definition("mp", "loyalty.points > 1", mergePolicyId="nope"), "mergePolicyId"),
        ({"expression": {"type": "PQL", "format": "pql/text", "value": "loyalty.points > 1"}}, "name"),
        (
            definition("fmt", "x", expression={"type": "PQL", "format": "pql/xml", "value": "x"}),
            "expression.format",
        ),
        (
            definition("ev", "loyalty.points > 1", evaluationInfo={"batch": {"enabled": "yes"}}),
            "evaluationInfo",
        ),
        (definition("lc", "loyalty.points > 1", lifecycleState="archived"), "lifecycleState"),
    ]:
        with pytest.raises(SegmentationError) as err:
            svc.create(body)
        assert err.value.status == 400 and field in err.value.message, (field, err.value.message)


def test_patch_is_a_full_overwrite(svc):
    d = svc.create(definition("orig", "loyalty.points > 1", description="keep?", lifecycleState="draft"))
    updated = svc.update(d["id"], definition("renamed", "loyalty.points > 2"))
    assert updated["name"] == "renamed" and updated["description"] == ""
    assert updated["lifecycleState"] == "published"  # reset when omitted (SPEC note)
    assert updated["creationTime"] == d["creationTime"] and updated["updateTime"] >= d["updateTime"]
    assert svc.get(d["id"])["expression"]["value"] == "loyalty.points > 2"
    with pytest.raises(SegmentationError) as err:
        svc.update(d["id"], definition("renamed", "loyalty.points >"))
    assert err.value.status == 400
    assert svc.get(d["id"])["expression"]["value"] == "loyalty.points > 2"


def test_in_segment_references_cycles_and_refused_delete(svc, store):
    base = svc.create(definition("base", "loyalty.points > 10"))
    top = svc.create(definition("top", f'inSegment("{base["id"]}") and homeAddress.countryCode = "US"'))
    by_name = svc.create(definition("by name", 'inSegment("top")'))
    audiences = Services(store).audiences
    assert audiences.get(top["id"])["dependencies"] == [base["id"]]
    assert audiences.get(by_name["id"])["dependencies"] == [top["id"]]
    assert sorted(audiences.get(base["id"])["dependents"]) == [top["id"]]
    # closing a cycle is refused on write
    with pytest.raises(SegmentationError) as err:
        svc.update(base["id"], definition("base", f'inSegment("{by_name["id"]}")'))
    assert err.value.status == 400 and "cycle" in err.value.message
    with pytest.raises(SegmentationError) as err:
        svc.create(definition("ghost ref", 'inSegment("no-such-audience")'))
    assert err.value.status == 400
    # deleting a referenced definition is refused, naming who references it
    with pytest.raises(SegmentationError) as err:
        svc.delete(base["id"])
    assert err.value.status == 400 and "'top'" in err.value.message
    assert svc.delete(by_name["id"])["status"] is True
    svc.delete(top["id"])
    svc.delete(base["id"])
    with pytest.raises(SegmentationError) as err:
        svc.get(base["id"])
    assert err.value.status == 404
    with pytest.raises(SegmentationError):
        audiences.get(base["id"])


def test_bulk_get(svc):
    a = svc.create(definition("one", "loyalty.points > 1"))
    out = svc.bulk_get({"ids": [{"id": a["id"]}, {"id": "missing"}]})
    assert out["results"][a["id"]]["name"] == "one"
    assert "404" in out["results"]["missing"]["errors"]
    with pytest.raises(SegmentationError) as err:
        svc.bulk_get({"ids": []})
    assert err.value.status == 400
    with pytest.raises(SegmentationError) as err:
        svc.bulk_get({"ids": [{"id": "missing"}]})
    assert err.value.status == 404


def test_conversion_round_trip(svc):
    body = definition("conv", 'homeAddress.countryCode = "US"')
    as_json = svc.convert(body)
    assert as_json["expression"]["format"] == "pql/json"
    tree = json.loads(as_json["expression"]["value"])
    assert tree["nodeType"] == "fnApply"
    back = svc.convert(as_json)
    assert back["expression"]["format"] == "pql/text"
    assert back["expression"]["value"].replace(" ", "") == 'homeAddress.countryCode="US"'
    # a pql/json definition can be created directly
    created = svc.create({**as_json, "name": "from json"})
    assert created["expression"]["format"] == "pql/json"
