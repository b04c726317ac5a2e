"""Finding 6 (low): /docs was blank without internet (Swagger UI from a CDN); in-process errors carried
``requestId: null``."""

from __future__ import annotations

import re

import pytest

from segmentation_pipelines import SegmentationClient
from segmentation_pipelines.errors import SegmentationError


def test_docs_are_served_without_internet(http):
    page = http.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
    for asset in assets:
        r = http.get(asset)
        assert r.status_code == 200 and len(r.content) > 100, asset
    assert http.get("/openapi.json").status_code == 200


def test_in_process_errors_carry_a_request_id(settings):
    with SegmentationClient(home=settings.home) as client:
        with pytest.raises(SegmentationError) as err:
            client.segment_definitions.get("nope")
        assert err.value.status == 404
        assert isinstance(err.value.body["requestId"], str) and len(err.value.body["requestId"]) >= 8
        with pytest.raises(SegmentationError) as again:
            client.datasets.get("nope")
        assert again.value.body["requestId"] != err.value.body["requestId"]
