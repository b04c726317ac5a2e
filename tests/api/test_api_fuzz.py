"""Fuzz every route of the app's own OpenAPI document: whatever arrives, the answer is never a 500, and every
error is AEP-shaped with the request id.

Plain hypothesis (no schemathesis): operations come from ``app.openapi()``; path parameters, query strings,
AEP headers, bodies (JSON of any shape, broken JSON, other content types) are generated.
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ._apps import make_app

METHODS = ("get", "post", "put", "patch", "delete")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=70)


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory):
    from segmentation_pipelines.settings import Settings

    home = tmp_path_factory.mktemp("fuzz") / "home"
    app = make_app(Settings(home=home, catalog_url=None, api_tokens=None), with_crash=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, app.openapi()


def operations(spec: dict) -> list[tuple[str, str, list[dict], bool]]:
    found = []
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                operation = item[method]
                found.append((method, path, operation.get("parameters", []), "requestBody" in operation))
    return found


@st.composite
def requests(draw, ops):
    method, path, parameters, has_body = draw(st.sampled_from(ops))
    url = path
    # A path value with '/' (decoded before routing) or a dot segment (normalized by the HTTP client) lands on
    # another route; such requests still must not 500, but need not reach the operation.
    routable = True
    for param in parameters:
        if param["in"] == "path":
            value = draw(st.text(min_size=1, max_size=30))
            routable = routable and "/" not in value and value not in (".", "..")
            url = url.replace("{" + param["name"] + "}", quote(value, safe=""))
    query = draw(st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=20), max_size=3))
    for param in parameters:
        if param["in"] == "query" and draw(st.booleans()):
            query[param["name"]] = draw(st.text(max_size=20) | st.integers().map(str))
    headers = {}
    if draw(st.booleans()):
        headers["x-sandbox-name"] = draw(st.sampled_from(["prod", "dev-1", "a"]) | header_text)
    if draw(st.booleans()):
        headers["x-gw-ims-org-id"] = draw(st.sampled_from(["org@AdobeOrg"]) | header_text)
    if draw(st.booleans()):
        headers["x-request-id"] = draw(header_text)
    content = None
    if has_body or method in ("post", "put", "patch"):
        kind = draw(st.sampled_from(["json", "broken", "other-type", "none"]))
        if kind == "json":
            content = json.dumps(draw(json_values)).encode()
            headers["content-type"] = "application/json"
        elif kind == "broken":
            content = draw(st.binary(min_size=1, max_size=60))
            headers["content-type"] = "application/json"
        elif kind == "other-type":
            content = draw(st.binary(min_size=1, max_size=60))
            headers["content-type"] = draw(
                st.sampled_from(["text/plain", "application/xml", "multipart/form-data"])
            )
    return method, url, query, headers, content, has_body and routable


def _is_json(content: bytes | None) -> bool:
    try:
        json.loads(content)
    except (TypeError, ValueError):
        return False
    return True


def test_openapi_lists_the_routes(fuzz_client):
    _, spec = fuzz_client
    paths = set(spec["paths"])
    assert "/health" in paths
    assert all(p == "/health" or p.startswith("/data/") for p in paths), paths


# In CI the examples are derandomized (a CI run is reproducible); locally they vary and failures are replayed
# from hypothesis' example database.
@hsettings(
    max_examples=300,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=bool(os.environ.get("CI")),
)
@given(data=st.data())
def test_no_route_answers_500_and_errors_are_aep_shaped(fuzz_client, data):
    client, spec = fuzz_client
    method, url, query, headers, content, reaches_body = data.draw(requests(operations(spec)))
    response = client.request(method.upper(), url, params=query, headers=headers, content=content)
    assert response.status_code < 500, (method, url, query, headers, content, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"requestId", "errors", "type", "title", "status"}, body
        assert body["status"] == response.status_code
        assert body["requestId"] == response.headers["x-request-id"]
        assert body["errors"][str(response.status_code)][0]["message"]
    if (
        reaches_body
        and content
        and headers.get("content-type") == "application/json"
        and not _is_json(content)
    ):
        assert response.status_code == 400, (method, url, content, response.text)
