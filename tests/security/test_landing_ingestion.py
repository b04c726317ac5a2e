"""Finding 1 (high): over REST, ingestion read any file the server could read, and its 400s told whether a file
existed. Now a REST caller names only files of its own sandbox's landing area, every refusal reads alike, and
files reach the landing area by upload (the Batch Ingestion API paths) or an operator's copy. In-process, a local
path is the caller's own file, as before."""

from __future__ import annotations

import json

import pytest

from segmentation_pipelines import SegmentationClient

from .conftest import CATALOG, IMPORT, Rest, person, write_jsonl

ROWS = [person("ann@x.com", loyalty={"points": 5}), person("bob@x.com")]
BODY = "".join(json.dumps(r) + "\n" for r in ROWS).encode()


def _message(response) -> str:
    (error,) = next(iter(response.json()["errors"].values()))
    return error["message"]


def test_upload_then_complete_ingests_into_the_callers_dataset(rest, settings):
    ds = rest.dataset()
    batch = rest.upload(ds, {"crm.jsonl": BODY})
    assert batch["status"] == "success" and batch["rowCount"] == 2
    assert batch["files"] == [f"batches/{batch['id']}/crm.jsonl"]  # no server path is shown
    assert str(settings.home) not in json.dumps(batch)
    got = rest.request("GET", f"{CATALOG}/batches/{batch['id']}").json()
    assert got["status"] == "success" and got["rowCount"] == 2
    # The same content again is the same batch (as for paths).
    again = rest.upload(ds, {"crm.jsonl": BODY})
    assert again["duplicate"] is True and again["id"] == batch["id"]


def test_operator_copied_file_is_ingested_by_relative_path(rest, settings):
    ds = rest.dataset()
    landing = settings.landing / "segmentation_AdobeOrg" / "prod" / "drop"
    write_jsonl(landing / "crm.jsonl", ROWS)
    r = rest.request("POST", f"{CATALOG}/dataSets/{ds}/batches", json={"paths": ["drop/crm.jsonl"]})
    assert r.status_code == 200 and r.json()["rowCount"] == 2, r.text


def test_no_file_outside_the_sandbox_landing_area(http, settings, tmp_path):
    other = Rest(http, "other")
    other_ds = other.dataset()
    other.upload(other_ds, {"secret.jsonl": BODY})
    other_landing = settings.landing / "segmentation_AdobeOrg" / "other"
    other_file = next(other_landing.rglob("secret.jsonl"))
    other_parquet = next((settings.data_root / "segmentation_AdobeOrg" / "other").rglob("part-*.parquet"))
    outside = write_jsonl(tmp_path / "outside.jsonl", ROWS)
    prod_landing = settings.landing / "segmentation_AdobeOrg" / "prod"
    prod_landing.mkdir(parents=True)
    (prod_landing / "link.jsonl").symlink_to(outside)

    rest = Rest(http)
    ds = rest.dataset()
    messages = set()
    for raw in [
        str(other_file),
        str(other_parquet),
        "../other/" + str(other_file.relative_to(other_landing)),
        str(outside),
        "link.jsonl",
        "/etc/passwd",
        "/etc/does-not-exist.jsonl",
        "missing.jsonl",
        ".",
        "a\u0000b",
    ]:
        r = rest.request("POST", f"{CATALOG}/dataSets/{ds}/batches", json={"paths": [raw]})
        assert r.status_code == 400, (raw, r.text)
        messages.add(_message(r).replace(f"'{raw[:200]}'", "'<path>'"))
    assert len(messages) == 1, messages  # one message: a refusal says nothing about the file system
    (message,) = messages
    assert "exist" not in message and "permission" not in message.lower()
    assert rest.request("GET", f"{CATALOG}/dataSets/{ds}").json()["rowCount"] == 0
    # Nothing of the other sandbox was copied over.
    assert rest.request("GET", f"{CATALOG}/dataSets/{ds}/batches").json() == {}


@pytest.mark.parametrize(
    "name",
    ["..", ".hidden.jsonl", "a%20b.jsonl", "%2E%2E%2Fx.jsonl", "x.csv", "a%00b.jsonl", "x" * 300 + ".json"],
)
def test_upload_file_names_are_checked(rest, settings, name):
    ds = rest.dataset()
    batch = rest.request(
        "POST", f"{IMPORT}/batches", json={"datasetId": ds, "inputFormat": {"format": "json"}}
    )
    r = rest.request(
        "PUT",
        f"{IMPORT}/batches/{batch.json()['id']}/datasets/{ds}/files/{name}",
        content=BODY,
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code in (400, 404, 415), r.text  # ".." is folded away by the URL: another route
    assert r.json()["status"] == r.status_code
    escaped = [
        p for p in settings.home.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".json", ".csv"))
    ]
    assert escaped == []


def test_upload_errors(rest, settings):
    ds = rest.dataset()
    r = rest.request(
        "POST", f"{IMPORT}/batches", json={"datasetId": "nope", "inputFormat": {"format": "json"}}
    )
    assert r.status_code == 404
    r = rest.request("POST", f"{IMPORT}/batches", json={"datasetId": ds, "inputFormat": {"format": "csv"}})
    assert r.status_code == 400 and "inputFormat.format" in _message(r)
    batch = rest.request(
        "POST", f"{IMPORT}/batches", json={"datasetId": ds, "inputFormat": {"format": "json"}}
    )
    batch_id = batch.json()["id"]
    r = rest.request("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "COMPLETE"})
    assert r.status_code == 400 and "no files" in _message(r)
    r = rest.request("POST", f"{IMPORT}/batches/{batch_id}", params={"action": "ABORT"})
    assert r.status_code == 400
    # Another dataset's path for this batch: not found.
    other = rest.dataset("other")
    r = rest.request(
        "PUT",
        f"{IMPORT}/batches/{batch_id}/datasets/{other}/files/a.jsonl",
        content=BODY,
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 404
    done = rest.upload(ds, {"a.jsonl": BODY})
    r = rest.request(
        "PUT",
        f"{IMPORT}/batches/{done['id']}/datasets/{ds}/files/b.jsonl",
        content=BODY,
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 409


def test_uploads_stream_past_the_json_body_limit_and_stop_at_their_own(settings, tmp_path):
    from fastapi.testclient import TestClient

    from segmentation_pipelines.api import create_app

    small = settings.model_copy(update={"max_body_bytes": 1000, "max_upload_bytes": 120_000})
    with TestClient(create_app(small), raise_server_exceptions=False) as client:
        rest = Rest(client)
        ds = rest.dataset()
        big = b"".join(json.dumps(person(f"p{i}@x.com")).encode() + b"\n" for i in range(2000))
        assert len(big) > 120_000
        few = big[: big.index(b"\n", 100_000) + 1]  # > max_body_bytes, < max_upload_bytes
        batch = rest.upload(ds, {"few.jsonl": few})
        assert batch["rowCount"] == few.count(b"\n")
        opened = rest.request(
            "POST", f"{IMPORT}/batches", json={"datasetId": ds, "inputFormat": {"format": "json"}}
        )
        batch_id = opened.json()["id"]

        def chunks():
            for i in range(0, len(big), 8192):
                yield big[i : i + 8192]

        r = rest.request(
            "PUT",
            f"{IMPORT}/batches/{batch_id}/datasets/{ds}/files/big.jsonl",
            content=chunks(),  # chunked: no Content-Length, so the limit is enforced while streaming
            headers={"content-type": "application/octet-stream"},
        )
        assert r.status_code == 413, r.text
        left = list((small.landing / "segmentation_AdobeOrg" / "prod" / "batches" / batch_id).glob("*"))
        assert left == []  # the partial file was written aside and removed
        # A JSON body over the JSON limit is still refused.
        r = rest.request("POST", f"{IMPORT}/batches", json={"datasetId": "x" * 2000, "inputFormat": {}})
        assert r.status_code == 413


def test_in_process_local_paths_stay_allowed(settings, tmp_path, monkeypatch):
    own = write_jsonl(tmp_path / "mine" / "crm.jsonl", ROWS)
    with SegmentationClient(home=settings.home) as client:
        ds = client.datasets.create({"name": "crm", "xdmClass": "_xdm.context.profile"})["id"]
        assert client.datasets.ingest(ds, [str(own)])["rowCount"] == 2
        monkeypatch.chdir(tmp_path / "mine")
        other = write_jsonl(tmp_path / "mine" / "more.jsonl", [person("cy@x.com")])
        assert client.datasets.ingest(ds, [other.name])["rowCount"] == 1  # relative to the current directory
        assert client.datasets.upload(ds, [tmp_path / "mine" / "crm.jsonl"])["duplicate"] is True
