"""SchedulesService and ``/config/schedules``: shapes, paging, JSON Patch, delete, the sandbox's default schedule,
and clear errors for bad input (naming the field)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from segmentation_pipelines.api import create_app
from segmentation_pipelines.catalog import models
from segmentation_pipelines.errors import SegmentationError
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.schedules import (
    DEFAULT_NAME,
    EXPORT_NOTE,
    SchedulesService,
    default_schedule_id,
    schedule_snapshot,
)

from .conftest import add_definition_row

BASE = "/data/core/ups/config/schedules"


def _body(**overrides):
    body = {
        "name": "nightly",
        "type": "batch_segmentation",
        "properties": {"segments": ["*"]},
        "schedule": "0 30 13 * * ?",
        "state": "active",
    }
    body.update(overrides)
    return body


def test_a_fresh_sandbox_has_one_inactive_daily_default_schedule(schedules, ctx):
    listing = schedules.list()
    assert listing["_page"] == {"totalCount": 1, "pageSize": 1}
    (default,) = listing["children"]
    assert default["id"] == default_schedule_id(ctx.org_id, "prod")
    assert default["name"] == DEFAULT_NAME
    assert default["type"] == "batch_segmentation"
    assert default["state"] == "inactive"
    assert default["properties"] == {"segments": ["*"]}
    assert default["schedule"] == "0 0 1 * * ?"
    assert default["dagster"]["cron"] == "0 1 * * *"
    # another sandbox gets its own
    other = SchedulesService(ServiceContext.create(ctx.settings, None, "dev-1")).list()
    assert other["_page"]["totalCount"] == 1
    assert other["children"][0]["id"] != default["id"]


def test_create_get_and_the_contract_shape(schedules, ctx):
    created = schedules.create(_body())
    assert created["name"] == "nightly"
    assert created["imsOrgId"] == ctx.org_id
    assert created["sandbox"]["sandboxName"] == "prod"
    assert created["schedule"] == "0 30 13 * * ?"  # the user's Quartz string
    assert created["dagster"] == {
        "scheduleName": "nightly__" + created["id"].replace("-", "")[:8],  # readable in the Dagster UI
        "cron": "30 13 * * *",
        "executionTimezone": "UTC",
    }
    assert created["timezone"] == "UTC"
    assert isinstance(created["createEpoch"], int) and created["createEpoch"] < 10**11  # seconds
    assert schedules.get(created["id"]) == created
    with ctx.catalog.session() as session:
        row = session.get(models.Schedule, created["id"])
        assert (row.cron, row.dagster_cron, row.timezone, row.state) == (
            "0 30 13 * * ?",
            "30 13 * * *",
            "UTC",
            "active",
        )


def test_state_defaults_to_inactive_and_timezone_is_kept(schedules):
    created = schedules.create(_without_state())
    assert created["state"] == "inactive"
    berlin = schedules.create(_body(timezone="Europe/Berlin"))
    assert berlin["timezone"] == "Europe/Berlin"
    assert berlin["dagster"]["executionTimezone"] == "Europe/Berlin"


def _without_state():
    body = _body()
    del body["state"]
    return body


def test_segments_are_definition_ids_of_the_sandbox(schedules, ctx):
    a = add_definition_row(ctx, "a")
    b = add_definition_row(ctx, "b")
    created = schedules.create(_body(properties={"segments": [a, b, a]}))
    assert created["properties"]["segments"] == [a, b]
    with pytest.raises(SegmentationError) as raised:
        schedules.create(_body(properties={"segments": [a, "nope"]}))
    assert raised.value.status == 400
    assert "properties.segments[1]" in raised.value.message and "'nope'" in raised.value.message
    with pytest.raises(SegmentationError, match=r'"\*" selects every definition and must stand alone'):
        schedules.create(_body(properties={"segments": ["*", a]}))


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"name": ""}, "name: required"),
        ({"type": "streaming"}, "type: required, one of batch_segmentation, export"),
        ({"state": "paused"}, "state: one of active, inactive"),
        ({"properties": None}, "properties: required"),
        ({"properties": {}}, "properties.segments: required"),
        ({"schedule": "0 0 * * * ?"}, "schedule '0 0 * * * ?': hours field '*'"),
        ({"schedule": "15 0 1 * * ?"}, "schedule '15 0 1 * * ?': seconds field '15'"),
        ({"schedule": "0 0 12 15W * ?"}, "day-of-month field '15W'"),
        ({"schedule": 5}, "schedule: expected a Quartz cron string"),
        ({"timezone": "Nowhere/Land"}, "timezone: unknown time zone 'Nowhere/Land'"),
    ],
)
def test_bad_input_is_refused_naming_the_field(schedules, overrides, words):
    with pytest.raises(SegmentationError) as raised:
        schedules.create(_body(**overrides))
    assert raised.value.status == 400
    assert words in raised.value.message


def test_export_schedules_are_validated_stored_and_say_they_do_not_fire_yet(schedules):
    request = {
        "destination": {"datasetId": "ds-1"},
        "schema": {"name": "_xdm.context.profile"},
        "fields": "a,b",
    }
    created = schedules.create(_body(type="export", properties=request))
    assert created["type"] == "export"
    assert created["properties"] == request
    assert created["notes"] == [EXPORT_NOTE]
    with pytest.raises(SegmentationError, match="properties.destination.datasetId"):
        schedules.create(_body(type="export", properties={"schema": {"name": "x"}}))
    bad_status = {**request, "filter": {"segments": [{"segmentId": "s", "status": ["gone"]}]}}
    with pytest.raises(SegmentationError, match=r"properties.filter.segments\[0\].status: 'gone'"):
        schedules.create(_body(type="export", properties=bad_status))


def test_paging(schedules):
    for i in range(4):
        schedules.create(_body(name=f"s{i}"))
    first = schedules.list(limit="2")
    assert first["_page"] == {"totalCount": 5, "pageSize": 2, "next": "2"}
    assert first["_links"]["next"]["href"] == "/config/schedules?start=2&limit=2"
    second = schedules.list(start="2", limit="2")
    last = schedules.list(start="4", limit="2")
    assert last["_page"] == {"totalCount": 5, "pageSize": 1}
    assert last["_links"] == {}
    ids = [s["id"] for page in (first, second, last) for s in page["children"]]
    assert len(set(ids)) == 5
    assert [s["name"] for s in first["children"]] == [DEFAULT_NAME, "s0"]  # oldest first
    with pytest.raises(SegmentationError, match="'limit': 0 is out of range; allowed: 1 to"):
        schedules.list(limit="0")
    with pytest.raises(SegmentationError, match="'start': 'x' is not an integer"):
        schedules.list(start="x")
    with pytest.raises(SegmentationError, match="'start': 9223372036854775808 is out of range"):
        schedules.list(start=str(2**63))


def test_patch_state_and_schedule(schedules, ctx):
    created = schedules.create(_body(state="inactive"))
    assert schedules.update(created["id"], [{"op": "add", "path": "/state", "value": "active"}]) is None
    assert schedules.get(created["id"])["state"] == "active"
    schedules.update(created["id"], [{"op": "add", "path": "/schedule", "value": "0 0 2 ? * MON"}])
    updated = schedules.get(created["id"])
    assert updated["schedule"] == "0 0 2 ? * MON"
    assert updated["dagster"]["cron"] == "0 2 * * MON"
    # all or nothing: a bad second operation leaves the first unapplied
    with pytest.raises(SegmentationError) as raised:
        schedules.update(
            created["id"],
            [
                {"op": "add", "path": "/state", "value": "inactive"},
                {"op": "add", "path": "/schedule", "value": "0 * * * * ?"},
            ],
        )
    assert "body[1].value '0 * * * * ?': minutes field '*'" in raised.value.message
    assert schedules.get(created["id"])["state"] == "active"


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        ([], "JSON Patch array"),
        ({"op": "add"}, "JSON Patch array"),
        ([{"op": "remove", "path": "/state"}], "body[0].op: must be 'add'"),
        ([{"op": "add", "path": "/name", "value": "x"}], "body[0].path: must be one of /state, /schedule"),
        ([{"op": "add", "path": "/state"}], "body[0].value: required"),
        ([{"op": "add", "path": "/state", "value": "on"}], "state must be one of active, inactive"),
    ],
)
def test_bad_patches_are_refused(schedules, patch, words):
    created = schedules.create(_body())
    with pytest.raises(SegmentationError) as raised:
        schedules.update(created["id"], patch)
    assert raised.value.status == 400 and words in raised.value.message


def test_delete_and_not_found(schedules, ctx):
    created = schedules.create(_body())
    assert schedules.delete(created["id"]) is None
    with pytest.raises(SegmentationError) as raised:
        schedules.get(created["id"])
    assert raised.value.status == 404
    with pytest.raises(SegmentationError):
        schedules.delete(created["id"])
    # the default schedule can be deleted too, and is not re-created afterwards
    default_id = default_schedule_id(ctx.org_id, "prod")
    schedules.delete(default_id)
    assert (
        SchedulesService(ServiceContext.create(ctx.settings, None, "prod")).list()["_page"]["totalCount"] == 0
    )
    with pytest.raises(SegmentationError):
        schedules.update(default_id, [{"op": "add", "path": "/state", "value": "active"}])


def test_schedules_are_sandbox_scoped(schedules, ctx):
    created = schedules.create(_body())
    other = SchedulesService(ServiceContext.create(ctx.settings, None, "dev"))
    with pytest.raises(SegmentationError) as raised:
        other.get(created["id"])
    assert raised.value.status == 404


def test_snapshot_lists_every_live_schedule(schedules, ctx):
    created = schedules.create(_body())
    SchedulesService(ServiceContext.create(ctx.settings, None, "dev")).list()
    schedules.delete(default_schedule_id(ctx.org_id, "prod"))
    rows = schedule_snapshot(ctx.settings)
    assert {(r["sandbox"], r["name"]) for r in rows} == {("prod", "nightly"), ("dev", DEFAULT_NAME)}
    mine = next(r for r in rows if r["id"] == created["id"])
    assert (mine["cron"], mine["dagster_cron"], mine["state"]) == ("0 30 13 * * ?", "30 13 * * *", "active")


def test_rest_routes(settings, ctx):
    client = TestClient(create_app(settings))
    response = client.post(BASE, json=_body(state="inactive"))
    assert response.status_code == 200, response.text
    ident = response.json()["id"]
    assert client.get(f"{BASE}/{ident}").json()["schedule"] == "0 30 13 * * ?"
    response = client.patch(f"{BASE}/{ident}", json=[{"op": "add", "path": "/state", "value": "active"}])
    assert response.status_code == 204 and response.content == b""
    assert client.get(f"{BASE}/{ident}").json()["state"] == "active"
    listing = client.get(BASE, params={"limit": 1}).json()
    assert listing["_page"]["totalCount"] == 2 and listing["_page"]["next"] == "1"
    bad = client.post(BASE, json=_body(schedule="0 0 12 15W * ?"))
    assert bad.status_code == 400
    assert "day-of-month field '15W'" in bad.json()["errors"]["400"][0]["message"]
    assert client.delete(f"{BASE}/{ident}").status_code == 204
    missing = client.get(f"{BASE}/{ident}")
    assert missing.status_code == 404 and missing.json()["status"] == 404
    other_sandbox = client.get(BASE, headers={"x-sandbox-name": "dev"}).json()
    assert [s["name"] for s in other_sandbox["children"]] == [DEFAULT_NAME]


@pytest.mark.parametrize("mode", ["in-process", "http"])
def test_python_client(settings, ctx, mode):
    from segmentation_pipelines.client import SegmentationClient

    if mode == "http":
        client = SegmentationClient(
            http_client=TestClient(create_app(settings), base_url="http://testserver")
        )
    else:
        client = SegmentationClient(home=settings.home)
    created = client.schedules.create(_body(state="inactive"))
    assert (
        client.schedules.update(created["id"], [{"op": "add", "path": "/state", "value": "active"}]) is None
    )
    assert client.schedules.get(created["id"])["state"] == "active"
    assert client.schedules.list()["_page"]["totalCount"] == 2
    assert client.schedules.list(limit=1)["_page"]["next"] == "1"
    with pytest.raises(SegmentationError) as raised:
        client.schedules.create(_body(schedule="0 0 1 * * ? 2030"))
    assert raised.value.status == 400 and "year field '2030'" in raised.value.message
    client.schedules.delete(created["id"])
    assert client.schedules.list()["_page"]["totalCount"] == 1


def test_state_changes_are_written_to_the_dagster_instance(settings, ctx, schedules, monkeypatch):
    """Without a webserver but with a prepared instance, the API writes the schedule's state in the instance
    (explicitly, whatever the default status), and leaves no Dagster load context behind."""
    from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext
    from dagster._core.scheduler.instigation import InstigatorStatus

    from segmentation_pipelines.dagster_home import prepare_dagster_home
    from segmentation_pipelines.definitions import defs

    home = prepare_dagster_home(settings)
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    def status(name):
        import dagster as dg

        with dg.DagsterInstance.from_config(str(home)) as instance:
            found = [s.status for s in instance.all_instigator_state() if s.instigator_name == name]
            return found[0] if found else None

    created = schedules.create(_body(state="active"))
    name = created["dagster"]["scheduleName"]
    assert status(name) == InstigatorStatus.RUNNING
    schedules.update(created["id"], [{"op": "add", "path": "/state", "value": "inactive"}])
    assert status(name) == InstigatorStatus.STOPPED
    assert not DefinitionsLoadContext.is_set()
    later = schedules.create(_body(name="later"))  # a fresh load in this process sees the newest catalog
    names = {s.name for s in defs().get_repository_def().schedule_defs}
    assert {name, later["dagster"]["scheduleName"]} <= names
    schedules.delete(created["id"])
    assert status(name) == InstigatorStatus.STOPPED


def _first_calls_at_once(settings, sandbox: str, threads: int = 6) -> list[dict]:
    """``threads`` services list the schedules of a sandbox nobody used yet, at the same moment."""
    import threading

    from segmentation_pipelines.service import schedules as schedules_module

    barrier = threading.Barrier(threads)
    results: list[dict] = []
    errors: list[BaseException] = []

    def call():
        try:
            service = SchedulesService(ServiceContext.create(settings, None, sandbox))
            barrier.wait()
            results.append(service.list())
        except BaseException as exc:  # reported below
            errors.append(exc)

    schedules_module._defaults_seen.clear()
    workers = [threading.Thread(target=call) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors
    return results


def test_concurrent_first_calls_create_one_default(settings, ctx):
    results = _first_calls_at_once(settings, "fresh")
    assert {r["_page"]["totalCount"] for r in results} == {1}


@pytest.mark.postgres
def test_on_postgresql(pg_url, tmp_path, monkeypatch):
    from segmentation_pipelines.settings import Settings

    settings = Settings(home=tmp_path / "pg-home", catalog_url=pg_url, api_tokens=None, dagster_url=None)
    monkeypatch.setenv("SEGMENTATION_HOME", str(settings.home))
    monkeypatch.setenv("SEGMENTATION_CATALOG_URL", pg_url)
    results = _first_calls_at_once(settings, "prod")
    assert {r["_page"]["totalCount"] for r in results} == {1}
    service = SchedulesService(ServiceContext.create(settings, None, "prod"))
    created = service.create(_body(state="inactive", timezone="America/New_York"))
    service.update(created["id"], [{"op": "add", "path": "/state", "value": "active"}])
    service.update(created["id"], [{"op": "replace", "path": "/schedule", "value": "0 0 5 ? * 2#1"}])
    got = service.get(created["id"])
    assert (got["state"], got["schedule"], got["dagster"]["cron"]) == (
        "active",
        "0 0 5 ? * 2#1",
        "0 5 * * 1#1",
    )
    assert {r["id"] for r in schedule_snapshot(settings)} == {
        created["id"],
        default_schedule_id(got["imsOrgId"], "prod"),
    }
    service.delete(created["id"])
    assert service.list()["_page"]["totalCount"] == 1
