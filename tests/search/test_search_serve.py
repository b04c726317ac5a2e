"""Search over HTTP against a real ``segmentation-pipelines serve``: the first search after each catalog change
(create, rename, refile, folder rename, delete) already answers with it."""

from __future__ import annotations

import pytest
from running import serving

from segmentation_pipelines import SegmentationClient

NS = "AEPSegments"
PQL = {"type": "PQL", "format": "pql/text", "value": 'homeAddress.countryCode = "US"'}


def _names(client, s: str) -> list[str]:
    return [e["name"] for e in client.search.entities(namespace=NS, s=s)["entities"]]


@pytest.mark.slow
def test_first_search_after_each_change_over_http(tmp_path):
    with (
        serving(tmp_path / "home") as (url, _),
        SegmentationClient(base_url=url, timeout=120) as client,
    ):
        rows = tmp_path / "crm.jsonl"
        rows.write_text(
            '{"identityMap": {"Email": [{"id": "a@x.com", "primary": true}]}, '
            '"homeAddress": {"countryCode": "US"}}\n'
        )
        dataset = client.datasets.create({"name": "crm", "xdmClass": "_xdm.context.profile"})
        client.datasets.upload(dataset["id"], [str(rows)])
        garden = client.folders.create({"name": "Garden"})["id"]
        roses = client.segment_definitions.create({"name": "Rose growers", "expression": PQL})["id"]
        assert _names(client, "segmentName:rose") == ["Rose growers"]
        body = client.segment_definitions.get(roses)
        client.segment_definitions.update(roses, {**body, "name": "Tulip growers", "folderId": garden})
        assert _names(client, "segmentName:rose") == [] and _names(client, "segmentName:tulip") == [
            "Tulip growers"
        ]
        client.folders.update(garden, [{"op": "replace", "path": "/name", "value": "Flowers"}])
        assert _names(client, "folderLocation:flowers") == ["Tulip growers"]
        client.segment_definitions.delete(roses)
        assert _names(client, "segmentName:tulip") == []
