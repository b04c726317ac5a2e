"""The REST app's plumbing: auth, sandbox scoping, request ids, and an AEP-shaped error for every failure."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

from ._apps import TEST_PREFIX, make_app

TOKEN = "s3cret-token"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def assert_aep_error(response, status: int, message_part: str = "") -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"requestId", "errors", "type", "title", "status"}, body
    assert body["status"] == status
    assert list(body["errors"]) == [str(status)]
    (item,) = body["errors"][str(status)]
    assert item["code"] and item["message"]
    assert body["type"] == f"https://ns.adobe.com/aep/errors/{item['code']}"
    assert body["requestId"] == response.headers["x-request-id"]
    assert message_part in item["message"], item["message"]
    assert "Traceback" not in response.text
    return body


@pytest.fixture
def client(settings):
    with TestClient(make_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def secured(settings):
    settings = settings.model_copy(update={"api_tokens": f"other,{TOKEN}"})
    settings.__dict__.pop("tokens", None)  # cached_property copied from the original
    with TestClient(make_app(settings), raise_server_exceptions=False) as c:
        yield c


def test_health_is_open_and_reports(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert UUID_RE.match(response.headers["x-request-id"])


def test_missing_and_wrong_tokens_get_401(secured):
    assert_aep_error(secured.get(f"{TEST_PREFIX}/notes/x"), 401, "Authorization")
    wrong = secured.get(f"{TEST_PREFIX}/notes/x", headers={"Authorization": "Bearer nope"})
    assert_aep_error(wrong, 401, "not valid")
    basic = secured.get(f"{TEST_PREFIX}/notes/x", headers={"Authorization": "Basic dTpw"})
    assert_aep_error(basic, 401)
    good = secured.get(f"{TEST_PREFIX}/notes/x", headers={"Authorization": f"Bearer {TOKEN}"})
    assert_aep_error(good, 404, "'x'")
    assert secured.get("/health").status_code == 200


def test_open_api_warns_loudly_at_startup(settings, caplog):
    with caplog.at_level(logging.WARNING, logger="segmentation_pipelines.api.app"):
        with TestClient(make_app(settings)):
            pass
    assert "SEGMENTATION_API_TOKENS is not set" in caplog.text


def test_resource_is_invisible_in_another_sandbox(client):
    created = client.post(
        f"{TEST_PREFIX}/notes", json={"name": "n", "size": 1}, headers={"x-sandbox-name": "a"}
    )
    assert created.status_code == 200, created.text
    note_id = created.json()["id"]
    assert client.get(f"{TEST_PREFIX}/notes/{note_id}", headers={"x-sandbox-name": "a"}).status_code == 200
    assert_aep_error(
        client.get(f"{TEST_PREFIX}/notes/{note_id}", headers={"x-sandbox-name": "b"}), 404, note_id
    )
    assert_aep_error(client.get(f"{TEST_PREFIX}/notes/{note_id}"), 404)  # default sandbox prod
    other_org = {"x-sandbox-name": "a", "x-gw-ims-org-id": "other@AdobeOrg"}
    assert_aep_error(client.get(f"{TEST_PREFIX}/notes/{note_id}", headers=other_org), 404)


@pytest.mark.parametrize("sandbox", ["PROD", "a b", "", "x" * 65, "ü"])
def test_invalid_sandbox_name_is_400(client, sandbox):
    response = client.get(f"{TEST_PREFIX}/notes/x", headers={"x-sandbox-name": sandbox.encode("utf-8")})
    assert_aep_error(response, 400, "x-sandbox-name")


def test_request_id_is_echoed(client):
    response = client.get("/nowhere", headers={"x-request-id": "my-req-1"})
    body = assert_aep_error(response, 404, "No route GET /nowhere")
    assert body["requestId"] == "my-req-1"
    # An id that is not a sane token is replaced, not echoed.
    replaced = client.get("/nowhere", headers={"x-request-id": "a b<script>"})
    assert UUID_RE.match(replaced.json()["requestId"])


def test_wrong_method_is_405(client):
    assert_aep_error(client.delete("/health"), 405, "DELETE")


def test_malformed_json_is_400(client):
    response = client.post(
        f"{TEST_PREFIX}/notes", content=b'{"name": "n", ', headers={"content-type": "application/json"}
    )
    body = assert_aep_error(response, 400, "Malformed JSON")
    assert body["errors"]["400"][0]["code"] == "UPLIB-101206-500"


def test_validation_error_names_the_field(client):
    response = client.post(f"{TEST_PREFIX}/notes", json={"name": "n", "size": -1})
    assert_aep_error(response, 400, "body field 'size'")
    missing = client.post(f"{TEST_PREFIX}/notes", json={"size": 1})
    assert_aep_error(missing, 400, "body field 'name'")
    wrong_shape = client.post(f"{TEST_PREFIX}/notes", json=[1, 2])
    assert_aep_error(wrong_shape, 400, "body")
    empty = client.post(f"{TEST_PREFIX}/notes")
    assert_aep_error(empty, 400, "body")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_body_is_415(client, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(f"{TEST_PREFIX}/notes", content=b'{"name": "n", "size": 1}', headers=headers)
    assert_aep_error(response, 415, "application/json")


def test_json_patch_content_type_is_accepted(client):
    response = client.post(
        f"{TEST_PREFIX}/notes",
        content=b'{"name": "n", "size": 1}',
        headers={"content-type": "application/json-patch+json"},
    )
    assert response.status_code == 200, response.text


def test_oversized_body_is_413_by_content_length_and_by_stream(settings):
    small = settings.model_copy(update={"max_body_bytes": 1000})
    with TestClient(make_app(small), raise_server_exceptions=False) as client:
        big = b'{"name": "' + b"x" * 2000 + b'", "size": 1}'
        declared = client.post(
            f"{TEST_PREFIX}/notes", content=big, headers={"content-type": "application/json"}
        )
        assert_aep_error(declared, 413, "1000 bytes")

        def chunks():  # no Content-Length: the size is only known while reading
            for _ in range(10):
                yield b" " * 300

        streamed = client.post(
            f"{TEST_PREFIX}/notes", content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in streamed.request.headers
        assert_aep_error(streamed, 413, "1000 bytes")
        fits = client.post(f"{TEST_PREFIX}/notes", json={"name": "n", "size": 1})
        assert fits.status_code == 200


def test_unexpected_error_is_500_without_details(client, caplog):
    with caplog.at_level(logging.ERROR):
        response = client.get(f"{TEST_PREFIX}/crash")
    body = assert_aep_error(response, 500, "see the server log")
    assert "secret internal detail" not in response.text
    assert body["requestId"] in caplog.text and "secret internal detail" in caplog.text


def test_json_nested_too_deeply_is_400(client):
    deep = b"[" * 100_000 + b"]" * 100_000
    response = client.post(f"{TEST_PREFIX}/notes", content=deep, headers={"content-type": "application/json"})
    body = assert_aep_error(response, 400, "could not be read as JSON")
    assert body["errors"]["400"][0]["code"] == "UPLIB-101206-500"
