"""Fixtures of the security suite: the real app behind a TestClient (a REST caller, so confined to its landing
area) and helpers to talk to it as a user would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from segmentation_pipelines.api import create_app

CATALOG = "/data/foundation/catalog"
IMPORT = "/data/foundation/import"


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def person(email: str, **extra) -> dict:
    return {"identityMap": {"Email": [{"id": email, "primary": True}]}, **extra}


class Rest:
    """A REST caller of one sandbox."""

    def __init__(self, client: TestClient, sandbox: str = "prod"):
        self.client = client
        self.headers = {"x-sandbox-name": sandbox}

    def request(self, method: str, path: str, **kw):
        return self.client.request(method, path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def dataset(self, name: str = "crm", xdm: str = "_xdm.context.profile") -> str:
        r = self.request("POST", f"{CATALOG}/dataSets", json={"name": name, "xdmClass": xdm})
        assert r.status_code == 200, r.text
        return r.json()["id"]

    def upload(self, dataset_id: str, files: dict[str, bytes], fmt: str = "json") -> dict:
        r = self.request(
            "POST", f"{IMPORT}/batches", json={"datasetId": dataset_id, "inputFormat": {"format": fmt}}
        )
        assert r.status_code == 200, r.text
        batch = r.json()["id"]
        for name, content in files.items():
            r = self.request(
                "PUT",
                f"{IMPORT}/batches/{batch}/datasets/{dataset_id}/files/{name}",
                content=content,
                headers={"content-type": "application/octet-stream"},
            )
            assert r.status_code == 200, r.text
        r = self.request("POST", f"{IMPORT}/batches/{batch}", params={"action": "COMPLETE"})
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def http(app) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def rest(http) -> Rest:
    return Rest(http)
