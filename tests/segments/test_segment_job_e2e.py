"""The real segment assets driven by segment jobs (in-process runs through Dagster): metrics and memberships."""

from __future__ import annotations

import pytest

from segmentation_pipelines.service.context import Services
from segmentation_pipelines.service.segment_jobs import SegmentJobsService

from .helpers import definition


@pytest.fixture
def defs(store):
    svc = Services(store).segment_definitions
    us = svc.create(definition("US", 'homeAddress.countryCode = "US"'))["id"]
    rich = svc.create(definition("Rich US", f'inSegment("{us}") and loyalty.points > 100'))["id"]
    return us, rich


def test_segment_job_evaluates_and_records_metrics(store, defs):
    us, rich = defs
    jobs = SegmentJobsService(store)
    job = jobs.create(
        [{"segmentId": rich}, {"segmentId": us}], evaluation_time="2026-03-01T00:00:00Z", wait=True
    )
    assert job["status"] == "SUCCEEDED", job.get("errors")
    metrics = job["metrics"]
    assert metrics["segmentedProfileCounter"] == {us: 2, rich: 1}
    assert metrics["segmentedProfileByStatusCounter"][us] == {"realized": 2, "existing": 0, "exited": 0}
    assert metrics["segmentedProfileByNamespaceCounter"][rich] == {"Email": 1}
    assert metrics["totalProfiles"] == 3
    members = Services(store).audiences.members(rich)
    assert members["jobId"] == job["id"] and members["evaluationTime"] == "2026-03-01T00:00:00.000Z"
    assert [m["identityMap"]["Email"][0]["id"] for m in members["children"]] == ["ann@x.com"]

    # the next day: same people, now "existing"
    job2 = jobs.create([{"segmentId": us}], evaluation_time="2026-03-02T00:00:00Z", wait=True)
    assert job2["status"] == "SUCCEEDED"
    assert job2["metrics"]["segmentedProfileByStatusCounter"][us] == {
        "realized": 0,
        "existing": 2,
        "exited": 0,
    }


def test_a_failing_job_publishes_nothing(store, defs):
    us, rich = defs
    # break the store under the job: merged profiles gone
    from segmentation_pipelines.profiles.layout import StoreLayout

    policy = Services(store).merge_policies.ensure_default()["id"]
    StoreLayout(store.sandbox_root).profiles_path(policy).unlink()
    job = SegmentJobsService(store).create(
        [{"segmentId": us}], evaluation_time="2026-03-01T00:00:00Z", wait=True
    )
    assert job["status"] == "FAILED"
    assert "merged profiles" in job["errors"][0]["msg"]
    assert Services(store).audiences.members(us)["evaluationTime"] is None
