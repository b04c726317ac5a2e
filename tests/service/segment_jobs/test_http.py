"""``/segment/jobs`` over HTTP through the client (FastAPI app, AEP headers and errors), with the probe location."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from segmentation_pipelines.api import create_app
from segmentation_pipelines.client import SegmentationClient
from segmentation_pipelines.errors import SegmentationError

from .conftest import CANCEL_WITHIN_S, PROBE_WORK_S, LocalDaemon, add_definition_row
from .probe_segments import probe_definitions


@pytest.fixture
def http(ctx):
    with TestClient(create_app(ctx.settings), base_url="http://testserver") as transport:
        with SegmentationClient(http_client=transport, sandbox="prod") as client:
            yield client


def test_rest_shapes_and_errors(ctx, http):
    a = add_definition_row(ctx, "a")
    job = http.segment_jobs.create([{"segmentId": a}], evaluation_time="2026-03-01T10:00:00+02:00")
    assert job["status"] == "NEW" and job["evaluationTime"] == "2026-03-01T08:00:00.000Z"
    assert http.segment_jobs.get(job["id"]) == job
    listed = http.segment_jobs.list(property=f"segments~segmentId=={a}", status="NEW")
    assert [j["id"] for j in listed["children"]] == [job["id"]]
    bulk = http.segment_jobs.bulk_get({"ids": [{"id": job["id"]}]})
    assert bulk["results"][job["id"]]["id"] == job["id"]
    cancelled = http.segment_jobs.cancel(job["id"])
    assert cancelled == {
        "status": True,
        "message": f"Segment job with id '{job['id']}' has been marked for cancelling",
    }
    assert http.segment_jobs.get(job["id"])["status"] == "CANCELLED"
    with pytest.raises(SegmentationError) as err:
        http.segment_jobs.get("nope")
    assert err.value.status == 404 and err.value.body["errors"]["404"][0]["message"]
    with pytest.raises(SegmentationError) as err:
        http.segment_jobs.create([{"segmentId": "missing"}])
    assert err.value.status == 400 and "body[0].segmentId" in err.value.message
    with pytest.raises(SegmentationError) as err:
        http.segment_jobs.create([{"segmentId": a}], evaluation_time="2026-13-01")
    assert err.value.status == 400
    raw = http.transport.http.post("/data/core/ups/segment/jobs/bulk-get", json={"ids": [{"id": job["id"]}]})
    assert raw.status_code == 207


def test_wait_over_http_polls_until_the_run_ends(ctx, http):
    a = add_definition_row(ctx, "a")
    with LocalDaemon(ctx.settings, probe_definitions(str(ctx.settings.home), [a])) as daemon:
        job = http.segment_jobs.create(
            [{"segmentId": a}], evaluation_time="2026-03-01T10:00:00Z", wait=True, poll=0.1
        )
    assert not daemon.errors
    assert job["status"] == "SUCCEEDED"
    assert job["metrics"]["segmentedProfileByStatusCounter"] == {
        a: {"realized": 2, "existing": 1, "exited": 4}
    }


def test_cancel_over_http_ends_cancelled_within_seconds(ctx, http):
    a = add_definition_row(ctx, "a")
    with LocalDaemon(
        ctx.settings, probe_definitions(str(ctx.settings.home), [a], work_s=PROBE_WORK_S)
    ) as daemon:
        job = http.segment_jobs.create([{"segmentId": a}])
        deadline = time.monotonic() + 60
        while http.segment_jobs.get(job["id"])["status"] != "PROCESSING":
            assert time.monotonic() < deadline and not daemon.errors, (
                http.segment_jobs.get(job["id"]),
                daemon.errors,
            )
            time.sleep(0.1)
        time.sleep(1.0)
        started = time.monotonic()
        http.segment_jobs.cancel(job["id"])
        assert http.segment_jobs.get(job["id"])["status"] == "CANCELLING"
        done = http.segment_jobs.wait(job["id"], timeout=PROBE_WORK_S / 2, poll=0.1)
        took = time.monotonic() - started
    assert done["status"] == "CANCELLED"
    assert took < CANCEL_WITHIN_S, (
        f"cancel took {took:.1f} s (the uncancelled run works {PROBE_WORK_S:.0f} s)"
    )
    assert not (Path(ctx.settings.home) / "probe" / job["id"]).exists()  # nothing of that run was written
