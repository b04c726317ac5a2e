"""The real segment assets driven by segment jobs (in-process runs through Dagster): metrics and memberships."""

from __future__ import annotations

import pytest

from segmentation_pipelines.errors import SegmentationError
from segmentation_pipelines.service.segment_jobs import SegmentJobsService
from segmentation_pipelines.service.services import Services

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
    for f in StoreLayout(store.sandbox_root).profiles_dir(policy).glob("*.parquet"):
        f.unlink()
    job = SegmentJobsService(store).create(
        [{"segmentId": us}], evaluation_time="2026-03-01T00:00:00Z", wait=True
    )
    assert job["status"] == "FAILED"
    assert "merged profiles" in job["errors"][0]["msg"]
    assert Services(store).audiences.members(us)["evaluationTime"] is None


def _big_store(ctx, profiles: int, events: int) -> None:
    """Replace the built store's files with a large synthetic population (same columns as the fixture)."""
    import duckdb

    from segmentation_pipelines.profiles.layout import StoreLayout

    layout = StoreLayout(ctx.sandbox_root)
    policy = Services(ctx).merge_policies.ensure_default()["id"]
    events_file = next(layout.events_dir().joinpath("current").glob("*.parquet"))
    for f in layout.profiles_dir(policy).glob("*.parquet"):
        f.unlink()
    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT 'p' || i AS profile_id,
                  [{{'key': 'Email', 'value': [{{'id': 'p' || i || '@x.com', 'primary': true}}]}}] AS identityMap,
                  {{'countryCode': CASE WHEN i % 3 = 0 THEN 'US' ELSE 'DE' END}} AS homeAddress,
                  {{'tier': 'gold', 'points': (i % 1000)::BIGINT}} AS loyalty
              FROM range({profiles}) r(i)) TO '{layout.profiles_dir(policy) / "part-big.parquet"}' (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (SELECT 'p' || (i % {profiles}) AS profile_id, 'e' || i AS _id,
                  TIMESTAMP '2026-02-01' + INTERVAL (i % 2000000) SECOND AS timestamp,
                  CASE WHEN i % 5 = 0 THEN 'commerce.purchases' ELSE 'web.webpagedetails.pageViews' END AS eventType,
                  {{'order': {{'priceTotal': (i % 300)::DOUBLE}}}} AS commerce
              FROM range({events}) r(i)) TO '{events_file}' (FORMAT parquet)"""
    )
    con.close()


@pytest.mark.slow
def test_cancelling_a_running_job_ends_cancelled_and_publishes_nothing(store):
    import threading
    import time
    import uuid

    svc = Services(store).segment_definitions
    us = svc.create(definition("US", 'homeAddress.countryCode = "US"'))["id"]
    spend = svc.create(
        definition(
            "Spenders",
            '(sum X.commerce.order.priceTotal over X from xEvent where X.eventType = "commerce.purchases") > 1000',
        )
    )["id"]
    _big_store(store, 1_500_000, 15_000_000)
    jobs = SegmentJobsService(store)
    first = jobs.create([{"segmentId": us}], evaluation_time="2026-03-01T00:00:00Z", wait=True)
    assert first["status"] == "SUCCEEDED", first.get("errors")
    before = Services(store).audiences.members(us, limit="5")

    job_id = str(uuid.uuid4())
    done: dict = {}
    worker = threading.Thread(
        target=lambda: done.setdefault(
            "job",
            jobs.create(
                [{"segmentId": us}, {"segmentId": spend}],
                evaluation_time="2026-03-02T00:00:00Z",
                wait=True,
                job_id=job_id,
            ),
        )
    )
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if jobs.get(job_id)["status"] == "PROCESSING":
                break
        except SegmentationError:
            pass
        time.sleep(0.1)
    time.sleep(1.0)
    cancelled_at = time.monotonic()
    jobs.delete(job_id)
    worker.join(timeout=120)
    assert not worker.is_alive()
    assert time.monotonic() - cancelled_at < 15
    assert done["job"]["status"] == "CANCELLED", done["job"]
    audiences = Services(store).audiences
    assert audiences.members(us, limit="5") == before
    assert audiences.members(spend)["evaluationTime"] is None
