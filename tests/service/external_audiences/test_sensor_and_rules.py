"""The file-arrival sensor on a real Dagster instance, and the rules: validation, limits, bad rows."""

from __future__ import annotations

import dagster as dg
import pytest

from segmentation_pipelines import SegmentationClient
from segmentation_pipelines.dagster_launcher import instance_for, load_definitions
from segmentation_pipelines.defs.external_audiences.sensors import external_audience_files
from segmentation_pipelines.errors import SegmentationError
from segmentation_pipelines.landing import landing_dir
from segmentation_pipelines.settings import get_settings
from service.segment_jobs.scenario import Scenario

FIELDS = [{"name": "email", "type": "string", "identityNs": "Email"}, {"name": "score", "type": "integer"}]


def body(path: str, kind: str = "file", **extra):
    return {
        "name": extra.pop("name", "upload"),
        "fields": extra.pop("fields", FIELDS),
        "sourceSpec": {"params": {"path": path, "type": kind}},
        "originName": "CUSTOM_UPLOAD",
        **extra,
    }


def landing(home):
    settings = get_settings(home=home)
    folder = landing_dir(settings.landing, settings.default_org, "prod")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_file_dropped_into_the_landing_area_is_picked_up_by_the_sensor(home, tmp_path):
    client = SegmentationClient(home=home)
    Scenario(client, tmp_path).load()
    drop = landing(home) / "drops"
    drop.mkdir()
    created = client.external_audiences.create(body("drops", "folder"), wait=True)
    audience_id = client.external_audiences.operation(created["operationId"])["audienceId"]
    assert client.external_audiences.runs(audience_id)["runs"] == []  # nothing to ingest yet

    settings = get_settings(home=home)
    instance = instance_for(settings)
    definitions = load_definitions(settings)
    repository = definitions.get_repository_def()
    context = dg.build_sensor_context(instance=instance, repository_def=repository)
    assert isinstance(external_audience_files(context), dg.SkipReason)

    (drop / "day1.csv").write_text("email,score\nann@example.com,1\nbob@example.com,2\n")
    result = external_audience_files(dg.build_sensor_context(instance=instance, repository_def=repository))
    (request,) = result.run_requests
    assert request.run_key.startswith(f"{audience_id}:")
    (run,) = client.external_audiences.runs(audience_id)["runs"]
    assert run["status"] == "QUEUED" and run["trigger"] == "file"
    # The same files again: no second run.
    again = external_audience_files(dg.build_sensor_context(instance=instance, repository_def=repository))
    assert isinstance(again, dg.SkipReason)

    # Dagster runs the request (as the daemon would); reading the run settles it from the Dagster run.
    job = definitions.resolve_job_def(request.job_name)
    outcome = job.execute_in_process(
        instance=instance, asset_selection=request.asset_selection, tags=request.tags
    )
    assert outcome.success
    done = client.external_audiences.get_run(audience_id, run["runId"])
    assert done["status"] == "SUCCESS" and done["metrics"]["rowsAccepted"] == 2
    emails = {r["identityMap"]["Email"][0]["id"] for r in client.audiences.members(audience_id)["children"]}
    assert emails == {"ann@example.com", "bob@example.com"}


def test_validation_errors_name_the_field(home):
    client = SegmentationClient(home=home)
    (landing(home) / "a.csv").write_text("email,score\nx@y.z,1\n")
    cases = [
        (body("a.csv", fields=[]), "fields"),
        (
            body(
                "a.csv",
                fields=[{"name": f"f{i}", "type": "string", "identityNs": "Email"} for i in range(42)],
            ),
            "fields",
        ),
        (body("a.csv", fields=[{"name": "score", "type": "integer"}]), "identity field"),
        (body("a.csv", fields=[{"name": "email", "type": "text", "identityNs": "Email"}]), "fields[0].type"),
        (body("a.csv", ttlInDays=0), "ttlInDays"),
        (body("a.csv", ttlInDays=91), "ttlInDays"),
        ({**body("a.csv"), "originName": "AAM"}, "originName"),
        (body("a b.csv"), "spaces"),
        (body("missing.csv"), "landing area"),
    ]
    for payload, expected in cases:
        with pytest.raises(SegmentationError) as error:
            client.external_audiences.create(payload)
        assert error.value.status == 400 and expected in error.value.message, (expected, error.value.message)
        assert error.value.code == "100910-400"


def test_bad_rows_are_counted_and_an_all_bad_run_fails(home, tmp_path):
    client = SegmentationClient(home=home)
    Scenario(client, tmp_path).load()
    folder = landing(home)
    (folder / "bad.csv").write_text("email,score\n,1\nann@example.com,x\n")
    created = client.external_audiences.create(body("bad.csv"), wait=True)
    operation = client.external_audiences.operation(created["operationId"])
    assert operation["status"] == "FAILED"
    (run,) = client.external_audiences.runs(operation["audienceId"])["runs"]
    assert run["status"] == "FAILED"
    assert "all 2 rows were rejected" in run["errors"][0]["msg"], run["errors"]
    assert [d["status"] for d in run["details"]] == ["FAILED", "NOT_STARTED"]
    assert client.audiences.members(operation["audienceId"])["children"] == []  # nothing visible

    # Unknown namespace: rows whose only identities are in a namespace the sandbox does not know.
    (folder / "loyal.csv").write_text("card,score\nL-1,1\n")
    fields = [
        {"name": "card", "type": "string", "identityNs": "Loyalty42"},
        {"name": "score", "type": "integer"},
    ]
    created = client.external_audiences.create(body("loyal.csv", name="loyal", fields=fields), wait=True)
    (run,) = client.external_audiences.runs(
        client.external_audiences.operation(created["operationId"])["audienceId"]
    )["runs"]
    assert run["status"] == "FAILED" and "UNKNOWN_NAMESPACE" in run["errors"][0]["msg"]


def test_one_run_in_progress_per_audience(home, tmp_path):
    client = SegmentationClient(home=home)
    (landing(home) / "a.csv").write_text("email,score\nann@example.com,1\n")
    created = client.external_audiences.create(body("a.csv"))  # its first run waits for a launcher: NEW
    audience_id = client.external_audiences.operation(created["operationId"])["audienceId"]
    with pytest.raises(SegmentationError) as busy:
        client.external_audiences.start_run(audience_id, {"dataFilterStartTime": 0})
    assert busy.value.status == 422 and "in progress" in busy.value.message
    with pytest.raises(SegmentationError) as missing:
        client.external_audiences.start_run(audience_id, {})
    assert missing.value.status == 400 and "dataFilterStartTime" in missing.value.message


def test_rest_errors_have_the_aep_shape_and_paths_are_confined(home, tmp_path):
    from fastapi.testclient import TestClient

    from segmentation_pipelines.api.app import create_app

    outside = tmp_path / "outside.csv"
    outside.write_text("email,score\nx@y.z,1\n")
    with TestClient(create_app(get_settings(home=home))) as http:
        answer = http.post("/data/core/ais/external-audience/", json=body(str(outside)))
        assert answer.status_code == 400
        (item,) = answer.json()["errors"]["400"]
        assert item["code"] == "100910-400" and "landing area" in item["message"]
        assert http.get("/data/core/ais/external-audience/nope").status_code == 404


def test_deleting_through_audiences_removes_the_external_audience(home):
    client = SegmentationClient(home=home)
    (landing(home) / "empty").mkdir()
    created = client.external_audiences.create(body("empty", "folder"))
    audience_id = client.external_audiences.operation(created["operationId"])["audienceId"]
    assert client.audiences.get(audience_id)["type"] == "ExternalSegment"
    client.audiences.delete(audience_id)
    with pytest.raises(SegmentationError) as gone:
        client.external_audiences.get(audience_id)
    assert gone.value.status == 404


@pytest.mark.slow
def test_daily_limit_per_audience(home, tmp_path):
    client = SegmentationClient(home=home)
    Scenario(client, tmp_path).load()
    (landing(home) / "a.csv").write_text("email,score\nann@example.com,1\n")
    created = client.external_audiences.create(body("a.csv"), wait=True)
    audience_id = client.external_audiences.operation(created["operationId"])["audienceId"]
    for _ in range(9):  # the creation's run was the first of today
        assert (
            client.external_audiences.start_run(audience_id, {"dataFilterStartTime": 0}, wait=True)["status"]
            == "SUCCESS"
        )
    with pytest.raises(SegmentationError) as limited:
        client.external_audiences.start_run(audience_id, {"dataFilterStartTime": 0})
    assert limited.value.status == 422 and "10 runs today" in limited.value.message
    assert len(client.external_audiences.runs(audience_id)["runs"]) == 10


def test_parquet_folder_source_with_typed_columns(home, tmp_path):
    import duckdb

    client = SegmentationClient(home=home)
    Scenario(client, tmp_path).load()
    folder = landing(home) / "parquet"
    folder.mkdir()
    duckdb.sql(
        "COPY (SELECT * FROM (VALUES ('ann@example.com', 7, TIMESTAMPTZ '2025-05-23 20:19:00+00', true),"
        " ('cat@example.com', 8, TIMESTAMPTZ '2025-05-24 08:00:00+00', false)) t(email, visits, seen, vip))"
        f" TO '{folder}/part-1.parquet' (FORMAT parquet)"
    )
    fields = [
        {"name": "email", "type": "string", "identityNs": "email"},  # matched case-insensitively
        {"name": "visits", "type": "long"},
        {"name": "seen", "type": "datetime"},
        {"name": "vip", "type": "boolean"},
    ]
    created = client.external_audiences.create(body("parquet", "folder", fields=fields), wait=True)
    audience_id = client.external_audiences.operation(created["operationId"])["audienceId"]
    rows = client.audiences.members(audience_id)["children"]
    payloads = {r["identityMap"]["Email"][0]["id"]: r["payload"] for r in rows}
    assert payloads == {
        "ann@example.com": {"visits": 7, "seen": "2025-05-23T20:19:00+00:00", "vip": True},
        "cat@example.com": {"visits": 8, "seen": "2025-05-24T08:00:00+00:00", "vip": False},
    }
