"""Datasets, merge policies and profile lookup through the services and the REST API, and the Dagster assets."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from segmentation_pipelines.api import create_app
from segmentation_pipelines.cli.demo_data import store_materializations
from segmentation_pipelines.errors import SegmentationError
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.services import Services

from .helpers import ident, write_jsonl


@pytest.fixture
def services(settings):
    return Services(ServiceContext.create(settings))


def _fixture_files(tmp_path):
    crm = write_jsonl(
        tmp_path / "crm.jsonl",
        [
            {
                "identityMap": ident(Email="a@x.com", CRMID="c1"),
                "person": {"name": {"firstName": "Ann"}},
                "extSourceSystemAudit": {"lastUpdatedDate": "2024-01-01T00:00:00Z"},
            },
            {"identityMap": ident(Email="b@x.com"), "person": {"name": {"firstName": "Bob"}}},
            {"person": {"name": {"firstName": "nobody"}}},
        ],
    )
    loy = write_jsonl(
        tmp_path / "loy.jsonl",
        [
            {
                "identityMap": ident(Email="a@x.com", loyaltyId="L1"),
                "person": {"name": {"firstName": "Annie"}},
                "loyalty": {"points": 7},
                "extSourceSystemAudit": {"lastUpdatedDate": "2024-06-01T00:00:00Z"},
            },
        ],
    )
    ev = write_jsonl(
        tmp_path / "ev.jsonl",
        [
            {
                "timestamp": "2024-05-01T00:00:00Z",
                "eventType": "commerce.purchases",
                "identityMap": ident(CRMID="c1"),
                "commerce": {"order": {"priceTotal": 3.5}},
            },
        ],
    )
    return crm, loy, ev


def test_datasets_ingest_schema_and_duplicates(services, tmp_path):
    crm, loy, ev = _fixture_files(tmp_path)
    ds = services.datasets.create({"name": "CRM", "xdmClass": "_xdm.context.profile"})
    batch = services.datasets.ingest(ds["id"], [str(crm)])
    assert (batch["status"], batch["rowCount"], batch["rejectedRowCount"]) == ("success", 2, 1)
    assert services.datasets.rejects(batch["id"])[0]["reasons"] == [
        "identityMap: missing or without any identity"
    ]
    again = services.datasets.ingest(ds["id"], [str(crm)])
    assert again["id"] == batch["id"] and again["duplicate"] is True
    assert services.datasets.get(ds["id"])["rowCount"] == 2
    assert list(services.datasets.batches(ds["id"])) == [batch["id"]]
    evs = services.datasets.create(
        {"name": "web", "schemaRef": {"id": "https://ns.adobe.com/xdm/context/experienceevent"}}
    )
    services.datasets.ingest(evs["id"], [str(ev)])
    schema = services.datasets.schema()
    assert schema["profile"]["person.name.firstName"] == "string"
    assert schema["profile"]["identityMap"] == "map"
    assert schema["experienceevent"]["timestamp"] == "date-time"
    assert schema["experienceevent"]["commerce.order.priceTotal"] == "number"
    from segmentation_pipelines.pql.schema import TYPE_NAMES, Schema

    assert set(schema["profile"].values()) | set(schema["experienceevent"].values()) <= TYPE_NAMES
    checker = Schema.from_dicts(profile=schema["profile"], event=schema["experienceevent"])
    assert checker.profile.lookup(("person", "name", "firstName")) == "string"
    assert checker.event.lookup(("timestamp",)) == "date-time"
    assert set(services.datasets.list()) == {ds["id"], evs["id"]}
    with pytest.raises(SegmentationError) as e:
        services.datasets.create({"name": "x", "xdmClass": "_xdm.context.segmentdefinition"})
    assert e.value.status == 400 and "xdmClass" in e.value.message
    with pytest.raises(SegmentationError) as e:
        services.datasets.ingest(ds["id"], [str(tmp_path / "missing.parquet")])
    assert e.value.status == 400 and "missing.parquet" in e.value.message
    services.datasets.delete(evs["id"])
    with pytest.raises(SegmentationError) as e:
        services.datasets.get(evs["id"])
    assert e.value.status == 404


def test_merge_policies_default_and_validation(services):
    policies = services.merge_policies.list()["children"]
    assert (
        len(policies) == 1
        and policies[0]["default"]
        and policies[0]["attributeMerge"]["type"] == "timestampOrdered"
    )
    with pytest.raises(SegmentationError) as e:
        services.merge_policies.create(
            {"name": "p", "attributeMerge": {"type": "dataSetPrecedence", "order": ["nope"]}}
        )
    assert e.value.status == 400 and "nope" in e.value.message
    with pytest.raises(SegmentationError) as e:
        services.merge_policies.delete(policies[0]["id"])
    assert e.value.status == 409
    other = services.merge_policies.create({"name": "other", "default": True})
    assert services.merge_policies.get(policies[0]["id"])["default"] is False
    assert services.merge_policies.list(default="true")["children"] == [other]


def test_build_through_dagster_and_look_up_profiles(settings, services, tmp_path):
    crm, loy, ev = _fixture_files(tmp_path)
    crm_ds = services.datasets.create({"name": "CRM", "xdmClass": "_xdm.context.profile"})
    loy_ds = services.datasets.create({"name": "Loyalty", "xdmClass": "_xdm.context.profile"})
    ev_ds = services.datasets.create({"name": "Web", "xdmClass": "_xdm.context.experienceevent"})
    for ds, path in ((crm_ds, crm), (loy_ds, loy), (ev_ds, ev)):
        services.datasets.ingest(ds["id"], [str(path)])
    crm_first = services.merge_policies.create(
        {
            "name": "crm first",
            "attributeMerge": {"type": "dataSetPrecedence", "order": [crm_ds["id"], loy_ds["id"]]},
        }
    )
    # Ingestion built the store; the new policy's merged profiles are what is stale now.
    assert services.profile_store.stale() == [f"merged/{crm_first['id']}"]
    assert services.profile_store.refresh()["status"] == "current"
    built = {"assets": store_materializations(settings, None, "prod")}
    graph = built["assets"]["profiles/identity_graph"]
    assert (
        graph["identities"],
        graph["profiles"],
        graph["excluded_components"],
        graph["largest_component"],
    ) == (4, 2, 0, 3)
    assert graph["fragments"] == 3 and graph["events"] == 1
    assert built["assets"]["profiles/experience_events"]["events"] == 1
    merged = {k: v for k, v in built["assets"].items() if k.startswith("profiles/merged_profiles/")}
    assert sorted(v["profiles"] for v in merged.values()) == [2, 2]

    by_time = services.profiles.get("CRMID", "c1")
    (entity,) = by_time.values()
    assert entity["entity"]["person"]["name"]["firstName"] == "Annie"  # the newer loyalty record wins
    assert entity["entity"]["loyalty"]["points"] == 7
    assert set(entity["entity"]["identityMap"]) == {"Email", "CRMID", "loyaltyId"}
    (by_crm,) = services.profiles.get("loyaltyId", "L1", crm_first["id"]).values()
    assert by_crm["entity"]["person"]["name"]["firstName"] == "Ann"
    assert by_crm["entityId"] == entity["entityId"]
    with pytest.raises(SegmentationError) as e:
        services.profiles.get("Email", "nobody@x.com")
    assert e.value.status == 404 and e.value.code == "UPAPI-113000-404"


def test_rest_routes(settings, tmp_path):
    crm, _, _ = _fixture_files(tmp_path)
    client = TestClient(create_app(settings))
    r = client.post(
        "/data/foundation/catalog/dataSets", json={"name": "CRM", "xdmClass": "_xdm.context.profile"}
    )
    assert r.status_code == 200, r.text
    ds = r.json()["id"]
    landing = (
        settings.landing / settings.default_org.replace("@", "_") / "prod"
    )  # an operator copies a file in
    landing.mkdir(parents=True)
    (landing / "crm.jsonl").write_bytes(crm.read_bytes())
    r = client.post(f"/data/foundation/catalog/dataSets/{ds}/batches", json={"paths": ["crm.jsonl"]})
    assert r.status_code == 200 and r.json()["rowCount"] == 2
    batch = r.json()["id"]
    assert client.get(f"/data/foundation/catalog/batches/{batch}").json()["rejectedRowCount"] == 1
    assert client.get(f"/data/foundation/catalog/batches/{batch}/rejects").json()["rejects"][0]["line"] == 3
    assert list(client.get(f"/data/foundation/catalog/dataSets/{ds}/batches").json()) == [batch]
    assert (
        client.get("/data/foundation/catalog/schema").json()["profile"]["person.name.firstName"] == "string"
    )
    assert ds in client.get("/data/foundation/catalog/dataSets").json()
    r = client.get("/data/core/ups/config/mergePolicies")
    assert r.status_code == 200 and r.json()["children"][0]["default"] is True
    r = client.post(
        "/data/core/ups/config/mergePolicies", json={"name": "x", "attributeMerge": {"type": "bogus"}}
    )
    assert r.status_code == 400 and "attributeMerge.type" in r.text
    r = client.get(
        "/data/core/ups/access/entities",
        params={"schema.name": "_xdm.context.profile", "entityIdNS": "Email", "entityId": "zz"},
    )
    assert r.status_code == 404 and r.json()["status"] == 404
    assert client.delete(f"/data/foundation/catalog/batches/{batch}").status_code == 204
    assert client.get(f"/data/foundation/catalog/batches/{batch}").status_code == 404
    assert client.get(f"/data/foundation/catalog/dataSets/{ds}").json()["rowCount"] == 0
    assert client.delete(f"/data/foundation/catalog/dataSets/{ds}").status_code == 204
    assert client.get(f"/data/foundation/catalog/dataSets/{ds}").status_code == 404


def test_definitions_follow_the_catalog(settings, services, monkeypatch):
    from segmentation_pipelines.defs.profiles import (
        EVENTS_KEY,
        IDENTITY_GRAPH_KEY,
        dataset_key,
        defs,
        merged_profiles_key,
    )

    monkeypatch.setenv("SEGMENTATION_HOME", str(settings.home))
    monkeypatch.delenv("SEGMENTATION_CATALOG_URL", raising=False)
    empty = defs().resolve_asset_graph()
    assert {IDENTITY_GRAPH_KEY, EVENTS_KEY} <= set(empty.get_all_asset_keys())
    ds = services.datasets.create({"name": "CRM", "xdmClass": "_xdm.context.profile"})
    default = services.merge_policies.ensure_default()
    graph = defs().resolve_asset_graph()
    keys = set(graph.get_all_asset_keys())
    assert {dataset_key(ds["id"]), merged_profiles_key(default["id"])} <= keys
    assert dataset_key(ds["id"]) in graph.get(IDENTITY_GRAPH_KEY).parent_keys
    assert IDENTITY_GRAPH_KEY in graph.get(merged_profiles_key(default["id"])).parent_keys
