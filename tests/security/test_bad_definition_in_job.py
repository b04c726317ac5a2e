"""Finding 3 (job side): one definition a job cannot evaluate sank the job, so no audience of the sandbox was
evaluated. Now the others are evaluated and published; the bad one (and what reads it) is reported in the job's
``errors`` with ``metrics.failedSegmentCounter``; the job is SUCCEEDED unless every definition failed."""

from __future__ import annotations

import json

import pytest

from segmentation_pipelines import SegmentationClient

from .conftest import person, write_jsonl
from .test_stale_work import _litter


def _definition(client, name: str, pql: str) -> str:
    body = {"name": name, "expression": {"type": "PQL", "format": "pql/text", "value": pql}}
    return client.segment_definitions.create(body)["id"]


@pytest.mark.slow
def test_one_bad_definition_does_not_sink_the_job(settings, tmp_path):
    with SegmentationClient(home=settings.home) as client:
        crm = client.datasets.create({"name": "crm", "xdmClass": "_xdm.context.profile"})["id"]
        loyalty = client.datasets.create({"name": "loyalty", "xdmClass": "_xdm.context.profile"})["id"]
        client.datasets.ingest(
            crm,
            [
                str(
                    write_jsonl(
                        tmp_path / "crm.jsonl", [person("ann@x.com", person={"name": {"firstName": "Ann"}})]
                    )
                )
            ],
        )
        client.datasets.ingest(
            loyalty, [str(write_jsonl(tmp_path / "loy.jsonl", [person("ann@x.com", loyalty={"points": 9})]))]
        )
        good = _definition(client, "ann", 'person.name.firstName = "Ann"')
        bad = _definition(client, "points", "loyalty.points > 1")
        reader = _definition(client, "reader", 'inSegment("points")')
        # The field goes away under the definition (its dataset is deleted): it no longer checks.
        client.datasets.delete(loyalty)
        litter = _litter(settings)  # and a killed run's folders: the next run removes them (finding 6)
        job = client.segment_jobs.create([{"segmentId": i} for i in (good, bad, reader)], wait=True, poll=0.2)
        assert job["status"] == "SUCCEEDED", job
        errors = {e["segmentId"]: e for e in job["errors"]}
        assert set(errors) == {bad, reader}, job["errors"]
        assert all(e["code"] == "SEGP-200422" for e in errors.values())
        assert "loyalty.points" in errors[bad]["msg"] and bad in errors[reader]["msg"]
        assert job["metrics"]["failedSegmentCounter"] == 2
        assert job["metrics"]["segmentedProfileCounter"] == {good: 1}
        members = client.audiences.members(good)["children"]
        assert [m["identityMap"]["Email"][0]["id"] for m in members] == ["ann@x.com"]
        json.dumps(job)
        assert not any(f.exists() for f in litter)

        only_bad = client.segment_jobs.create([{"segmentId": bad}], wait=True, poll=0.2)
        assert only_bad["status"] == "FAILED", only_bad
