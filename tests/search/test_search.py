"""Segment search through the client, in-process and over HTTP: counts per namespace, entities (folders first,
paged), taxonomy, the Lucene subset's edge cases, the index following catalog changes, and named errors."""

from __future__ import annotations

import json

import pytest
from contract import assert_matches, assert_schema, spec
from fastapi.testclient import TestClient

from segmentation_pipelines import SegmentationClient, SegmentationError
from segmentation_pipelines.api import create_app

NS = "AEPSegments"


def with_profiles(settings, tmp_path) -> None:
    rows = tmp_path / "crm.jsonl"
    person = {
        "identityMap": {"Email": [{"id": "a@x.com", "primary": True}]},
        "homeAddress": {"countryCode": "US"},
    }
    rows.write_text(json.dumps(person) + "\n")
    local = SegmentationClient(home=settings.home, sandbox="prod")
    dataset = local.datasets.create({"name": "crm", "xdmClass": "_xdm.context.profile"})
    local.datasets.ingest(dataset["id"], [str(rows)])


@pytest.fixture(params=["local", "http"])
def client(request, settings, monkeypatch, tmp_path):
    monkeypatch.setenv("SEGMENTATION_HOME", str(settings.home))
    with_profiles(settings, tmp_path)
    if request.param == "local":
        yield SegmentationClient(home=settings.home, sandbox="prod")
        return
    with TestClient(create_app(settings)) as http:
        yield SegmentationClient(http_client=http, sandbox="prod")


def define(client, name: str, description: str = "", **extra) -> str:
    body = {
        "name": name,
        "description": description,
        "expression": {"type": "PQL", "format": "pql/text", "value": 'homeAddress.countryCode = "US"'},
        **extra,
    }
    return client.segment_definitions.create(body)["id"]


@pytest.fixture
def world(client):
    """Cars/{Fast cars}, Garden; five definitions, one external audience."""
    cars = client.folders.create({"name": "Cars", "description": "Everything on wheels"})["id"]
    fast = client.folders.create({"name": "Fast cars", "parentFolderId": cars})["id"]
    garden = client.folders.create({"name": "Garden"})["id"]
    ids = {
        "red": define(client, "Red sports car owners", "People who own a red sports car", folderId=fast),
        "blue": define(client, "Blue car owners", "Own a blue car, bought last year", folderId=cars),
        "color": define(client, "Colour lovers", "Color of the car does not matter"),
        "roses": define(client, "Rose growers", "Garden people with roses", folderId=garden),
        "loyal": define(client, "Loyalty gold", "Gold tier members"),
    }
    upload = client.folders.create({"name": "Uploads", "namespace": "CustomerAudienceUpload"})["id"]
    ids["crm"] = client.audiences.create(
        {"type": "ExternalSegment", "name": "CRM car leads", "audienceId": "crm-1", "folderId": upload}
    )["id"]
    return {"cars": cars, "fast": fast, "garden": garden, "upload": upload, **ids}


def names(client, s: str | None = None, **query) -> list[str]:
    result = client.search.entities(namespace=NS, s=s, **query)
    return [e["name"] for e in result["entities"]]


def test_namespaces_count_matches_per_namespace(client, world):
    result = client.search.namespaces(s="segmentName:car*")
    # The SPEC's item schema (a nested namespace array) contradicts its own example and the docs (aep-api §13.8):
    # the items follow the example, everything else the schema.
    assert_matches({**result, "namespaces": []}, "/search/namespaces", "get")
    example = spec()["components"]["schemas"]["SearchNamespaceList"]["properties"]["namespaces"]["example"]
    assert all(set(item) == set(example[0]) for item in result["namespaces"])
    counts = {n["namespace"]: n["count"] for n in result["namespaces"]}
    # AEPSegments: folders Cars, Fast cars; definitions Red sports car owners, Blue car owners.
    assert counts == {"AEPSegments": 4, "CustomerAudienceUpload": 1}
    assert result["totalCount"] == "2" and result["status"] == {"message": "Success"}
    assert {n["namespace"]: n["count"] for n in client.search.namespaces()["namespaces"]} == {
        "AEPSegments": 8,
        "CustomerAudienceUpload": 2,
    }


def test_entities_folders_first_and_paged(client, world):
    result = client.search.entities(namespace=NS)
    assert_matches(result, "/search/entities", "get")
    for entity in result["entities"]:
        assert_schema(entity, "SearchEntityObject")
    listed = [(e["isFolder"], e["name"]) for e in result["entities"]]
    assert listed[:3] == [(True, "Cars"), (True, "Fast cars"), (True, "Garden")]
    assert all(not folder for folder, _ in listed[3:]) and len(listed) == 8
    assert result["page"] == {"totalCount": 8, "totalPages": 1, "pageOffset": 0, "pageSize": 8}
    red = next(e for e in result["entities"] if e["name"] == "Red sports car owners")
    assert red["id"] == world["red"] and red["parentFolderId"] == world["fast"]
    assert (
        red["folderLocation"] == "Cars/Fast cars" and red["description"] == "People who own a red sports car"
    )

    pages = [client.search.entities(namespace=NS, limit=3, page=p) for p in range(3)]
    assert [p["page"]["pageSize"] for p in pages] == [3, 3, 2]
    assert all(p["page"]["totalPages"] == 3 and p["page"]["totalCount"] == 8 for p in pages)
    assert [e["name"] for p in pages for e in p["entities"]] == [e["name"] for e in result["entities"]]
    assert client.search.entities(namespace=NS, limit=3, page=5)["entities"] == []

    # entityId: what one folder holds (sub-folders first).
    assert names(client, entityId=world["cars"]) == ["Fast cars", "Blue car owners"]
    assert names(client, entityId="root") == ["Cars", "Garden", "Colour lovers", "Loyalty gold"]
    assert names(client, "car*", entityId=world["cars"]) == ["Fast cars", "Blue car owners"]
    uploads = client.search.entities(namespace="CustomerAudienceUpload")["entities"]
    assert [(e["name"], e["parentFolderId"]) for e in uploads] == [
        ("Uploads", "root"),
        ("CRM car leads", world["upload"]),
    ]


def test_taxonomy_walks_from_the_root_to_the_parent(client, world):
    result = client.search.taxonomy(namespace=NS, entityId=world["red"])
    assert_matches(result, "/search/taxonomy", "get")
    assert [(t["id"], t["name"], t["parentFolderId"]) for t in result["taxonomy"]] == [
        (world["cars"], "Cars", "root"),
        (world["fast"], "Fast cars", world["cars"]),
    ]
    assert [t["name"] for t in client.search.taxonomy(namespace=NS, entityId=world["fast"])["taxonomy"]] == [
        "Cars"
    ]
    assert client.search.taxonomy(namespace=NS, entityId=world["loyal"])["taxonomy"] == []
    with pytest.raises(SegmentationError) as err:
        client.search.taxonomy(namespace=NS, entityId="nope")
    assert err.value.status == 404 and "nope" in err.value.message


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        # plain terms over every field; side by side = OR
        ("roses", {"Rose growers"}),
        ("roses gold", {"Rose growers", "Loyalty gold"}),
        # field and case-insensitive text
        ("segmentName:RED", {"Red sports car owners"}),
        ("segmentDescription:red", {"Red sports car owners"}),
        # AND / OR / NOT, &&, ||, !, + and -
        ("segmentName:car AND segmentDescription:blue", {"Blue car owners"}),
        ("segmentName:car && !segmentDescription:blue", {"Red sports car owners"}),
        ("segmentName:car AND NOT segmentName:red", {"Blue car owners"}),
        ("segmentName:rose || segmentName:gold", {"Rose growers", "Loyalty gold"}),
        ("+segmentName:car -segmentName:blue", {"Red sports car owners"}),
        ("NOT car* AND NOT segmentName:gold", {"Rose growers", "Garden"}),
        ("segmentName:(rose OR gold)", {"Rose growers", "Loyalty gold"}),
        # wildcards
        ("segmentName:col*", {"Colour lovers"}),
        ("segmentName:co?our", {"Colour lovers"}),
        ("segmentName:*arden", {"Garden"}),
        # fuzzy: default 2 edits, ~0 exact, ~1
        ("segmentName:colr~1", set()),  # 'colour' is 2 edits away
        # 2 edits: colour (+o +u), car (o->a, -l), gold (c->g, r->d)
        ("segmentName:colr~", {"Colour lovers", "Red sports car owners", "Blue car owners", "Loyalty gold"}),
        ("segmentName:colour~0", {"Colour lovers"}),
        ("segmentName:colou~0", set()),
        ("segmentName:grower~1", {"Rose growers"}),
        # phrases and proximity
        ('segmentDescription:"red sports car"', {"Red sports car owners"}),
        ('segmentDescription:"own car"', set()),
        ('segmentDescription:"own car"~2', {"Blue car owners"}),
        ('segmentDescription:"car red"', set()),
        # regular expressions (on the lower-cased terms)
        ("segmentName:/ro[sz]e/", {"Rose growers"}),
        ("segmentName:/gr.*s/", {"Rose growers"}),
        # ids and folders
        ("folderLocation:fast", {"Red sports car owners"}),
        ('folderLocation:"cars/fast cars"', {"Red sports car owners"}),
    ],
)
def test_lucene_edge_cases(client, world, s, expected):
    assert set(names(client, s)) == expected, s


def test_id_fields_are_exact(client, world):
    assert names(client, f"segmentId:{world['roses']}") == ["Rose growers"]
    assert set(names(client, f"folderId:{world['cars']}")) == {"Cars", "Blue car owners"}
    assert set(names(client, f"parentFolderId:{world['cars']}")) == {"Fast cars", "Blue car owners"}
    assert names(client, f"segmentId:{world['roses'][:-2]}") == []
    assert names(client, f"segmentId:{world['roses'][:8]}*") == ["Rose growers"]


def test_the_index_follows_the_catalog(client, world):
    assert names(client, "segmentName:tulip") == []
    tulips = define(client, "Tulip growers", folderId=world["garden"])
    assert names(client, "segmentName:tulip") == ["Tulip growers"]
    body = client.segment_definitions.get(tulips)
    assert body["folderId"] == world["garden"]
    client.segment_definitions.update(tulips, {**body, "name": "Tulip fans", "folderId": world["cars"]})
    assert names(client, "segmentName:tulip") == ["Tulip fans"]
    assert names(client, "segmentName:tulip", entityId=world["cars"]) == ["Tulip fans"]
    client.folders.update(world["cars"], [{"op": "replace", "path": "/name", "value": "Vehicles"}])
    assert set(names(client, "folderLocation:vehicles")) == {
        "Fast cars",
        "Blue car owners",
        "Red sports car owners",
        "Tulip fans",
    }
    client.segment_definitions.delete(tulips)
    assert names(client, "segmentName:tulip") == []
    client.audiences.update(
        world["crm"], {"type": "ExternalSegment", "name": "CRM tulip leads", "audienceId": "crm-1"}
    )
    found = client.search.entities(namespace="CustomerAudienceUpload", s="tulip")["entities"]
    assert [(e["name"], e["parentFolderId"]) for e in found] == [("CRM tulip leads", "root")]


def test_folders_rules(client, world):
    with pytest.raises(SegmentationError) as err:
        client.folders.delete(world["cars"])
    assert err.value.status == 400 and "Fast cars" in err.value.message
    with pytest.raises(SegmentationError) as err:
        client.folders.update(
            world["cars"], [{"op": "replace", "path": "/parentFolderId", "value": world["fast"]}]
        )
    assert err.value.status == 400 and "parentFolderId" in err.value.message
    with pytest.raises(SegmentationError) as err:
        client.folders.create({"name": "fast CARS", "parentFolderId": world["cars"]})
    assert err.value.status == 409
    with pytest.raises(SegmentationError) as err:
        define(client, "Lost", folderId="no-such-folder")
    assert err.value.status == 400 and "folderId" in err.value.message
    with pytest.raises(SegmentationError) as err:
        define(client, "Wrong namespace", folderId=world["upload"])
    assert err.value.status == 400 and "CustomerAudienceUpload" in err.value.message
    empty = client.folders.create({"name": "Empty"})["id"]
    client.folders.delete(empty)
    with pytest.raises(SegmentationError) as err:
        client.folders.get(empty)
    assert err.value.status == 404


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"s": "segmentName:(car"}, "'s'"),
        ({"s": "name:car"}, "unknown field 'name' at position 0; use one of segmentName"),
        ({"s": "segmentName:car OR foo:x"}, "unknown field 'foo' at position 19"),
        ({"s": "segmentName:car~3"}, "fuzzy distance '~3' must be 0..2"),
        ({"s": "segmentName:[a TO c]"}, "range"),
        ({"s": "segmentName:/[a/"}, "regular expression"),
        ({"s": "car AND"}, "'s'"),
        ({"limit": "51"}, "limit"),
        ({"page": "-1"}, "page"),
    ],
)
def test_bad_queries_are_named(client, world, query, named):
    with pytest.raises(SegmentationError) as err:
        client.search.entities(namespace=NS, **query)
    assert err.value.status == 400, err.value.body
    assert named in err.value.message, err.value.message


def test_required_parameters(client, world):
    with pytest.raises(SegmentationError) as err:
        client.search.entities()
    assert err.value.status == 400 and "namespace" in err.value.message
    with pytest.raises(SegmentationError) as err:
        client.search.taxonomy(namespace=NS)
    assert err.value.status == 400 and "entityId" in err.value.message
    with pytest.raises(SegmentationError) as err:
        client.search.entities(namespace=NS, entityId="nope")
    assert err.value.status == 404 and "nope" in err.value.message


def test_http_headers_and_schema_name(settings, monkeypatch):
    monkeypatch.setenv("SEGMENTATION_HOME", str(settings.home))
    base = "/data/core/ups/search/namespaces"
    with TestClient(create_app(settings)) as http:
        ok = http.get(
            base,
            params={"schema.name": "_xdm.context.segmentdefinition"},
            headers={"x-ups-search-version": "1.0"},
        )
        assert ok.status_code == 200 and ok.json()["namespaces"] == [
            {"namespace": "AEPSegments", "displayName": "Segmentation Service", "count": 0}
        ]
        missing = http.get(base, params={"schema.name": "_xdm.context.segmentdefinition"})
        assert missing.status_code == 400
        assert "x-ups-search-version" in missing.json()["errors"]["400"][0]["message"]
        wrong = http.get(
            base, params={"schema.name": "_xdm.context.profile"}, headers={"x-ups-search-version": "1.0"}
        )
        assert wrong.status_code == 400 and "schema.name" in wrong.json()["errors"]["400"][0]["message"]
        entities = http.get(
            "/data/core/ups/search/entities",
            params={"schemaClass": "_xdm.context.segmentdefinition", "namespace": NS},
            headers={"x-ups-search-version": "1.0"},
        )
        assert entities.status_code == 200, entities.text


def test_the_index_follows_changes_that_keep_the_counts(client, world):
    """One delete and one create between two searches (same number of rows), a nested folder renamed, a
    definition moved back to the root: each is seen by the next search (the index applies only what changed)."""
    assert names(client, "segmentName:rose") == ["Rose growers"]
    client.segment_definitions.delete(world["roses"])
    tulips = define(client, "Tulip growers", "Garden people with tulips", folderId=world["fast"])
    assert names(client, "segmentName:rose") == []
    assert names(client, "segmentDescription:garden") == ["Tulip growers"]
    client.folders.update(world["fast"], [{"op": "replace", "path": "/name", "value": "Racing"}])
    assert set(names(client, "folderLocation:racing")) == {"Red sports car owners", "Tulip growers"}
    assert names(client, 'folderLocation:"fast cars"') == []
    body = client.segment_definitions.get(tulips)
    client.segment_definitions.update(tulips, {**body, "folderId": "root"})
    assert names(client, "folderLocation:racing") == ["Red sports car owners"]
    assert "Tulip growers" in names(client, entityId="root")
