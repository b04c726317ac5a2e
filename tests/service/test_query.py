"""Integer query parameters: every paging route answers a bad or out-of-range ``start``/``limit``/``page`` with a
400 naming the parameter and its range (never a 500 from an SQL OFFSET/LIMIT overflow), and keeps good values."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from segmentation_pipelines.api import create_app
from segmentation_pipelines.errors import BadRequest
from segmentation_pipelines.service.query import MAX_INT, int_param, parse_int
from segmentation_pipelines.settings import Settings

PAGED_ROUTES = [
    ("/data/foundation/catalog/dataSets", ("start", "limit")),
    ("/data/core/ups/config/mergePolicies", ("start", "limit")),
    ("/data/core/ups/config/schedules", ("start", "limit")),
    ("/data/core/ups/segment/definitions", ("start", "limit", "page")),
    ("/data/core/ups/segment/jobs", ("start", "limit")),
    ("/data/core/ups/audiences", ("start", "limit")),
]
HEADERS = {"x-sandbox-name": "prod", "x-gw-ims-org-id": "org@AdobeOrg"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(
        Settings(home=tmp_path_factory.mktemp("query") / "home", catalog_url=None, api_tokens=None)
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_parse_int_bounds_and_messages():
    assert parse_int(None, "start", 7) == 7
    assert parse_int("", "start", 7) == 7
    assert parse_int(" 12 ", "start", 0) == 12
    assert parse_int(["3"], "start", 0) == 3
    assert int_param({"limit": "5"}, "limit", 100, minimum=1) == 5
    assert parse_int(str(MAX_INT), "start", 0) == MAX_INT
    with pytest.raises(BadRequest, match=r"'start': 9223372036854775808 is out of range; allowed: 0 to "):
        parse_int(str(2**63), "start", 0)
    with pytest.raises(BadRequest, match=r"'limit': 0 is out of range; allowed: 1 to 1000"):
        parse_int("0", "limit", 100, minimum=1, maximum=1000)
    with pytest.raises(BadRequest, match=r"'page': 'x' is not an integer"):
        parse_int("x", "page", 0)
    with pytest.raises(BadRequest, match=r"'start': -1 is out of range"):
        parse_int("-1", "start", 0)
    with pytest.raises(BadRequest, match=r"'start': given 2 times"):
        parse_int(["1", "2"], "start", 0)
    with pytest.raises(BadRequest, match="is out of range"):
        parse_int("9" * 400, "start", 0)


@pytest.mark.parametrize(("path", "names"), PAGED_ROUTES)
def test_out_of_range_paging_is_a_400_naming_the_parameter(client, path, names):
    assert client.get(path, headers=HEADERS).status_code == 200
    assert client.get(path, params={"start": "0", "limit": "10"}, headers=HEADERS).status_code == 200
    for name in names:
        for value in (str(2**63), "-1", "abc"):
            response = client.get(path, params={name: value}, headers=HEADERS)
            assert response.status_code == 400, (path, name, value, response.text)
            message = response.json()["errors"]["400"][0]["message"]
            assert f"'{name}'" in message, message
