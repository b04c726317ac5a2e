"""SegmentJobsService on a real catalog and a real Dagster instance, with the probe segments code location.

Statuses, the contract's shapes (``segments``, ``metrics``, ``_links``), list filters, bulk-get, run requests,
in-process runs, cancellation and the status mapping. The real evaluation is covered by ``test_end_to_end.py``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from segmentation_pipelines import dagster_launcher as dagster_runs
from segmentation_pipelines.dagster_launcher import DagsterLauncher
from segmentation_pipelines.errors import SegmentationError
from segmentation_pipelines.service.segment_jobs import SegmentJobsService

from .conftest import CANCEL_WITHIN_S, PROBE_WORK_S, add_definition_row
from .probe_segments import PROBE_COUNTS, probe_definitions


def with_probe(ctx, ids, work_s=0.0):
    ctx.launcher = DagsterLauncher(
        ctx.settings, definitions=probe_definitions(str(ctx.settings.home), ids, work_s=work_s)
    )
    return SegmentJobsService(ctx)


def test_create_is_new_with_contract_shape(ctx, jobs):
    a = add_definition_row(ctx, "a")
    job = jobs.create([{"segmentId": a}])
    assert job["status"] == "NEW"
    assert job["source"] == "api"
    assert job["imsOrgId"] == ctx.org_id and job["sandbox"]["sandboxName"] == "prod"
    assert job["segments"][0]["segmentId"] == a
    segment = job["segments"][0]["segment"]
    assert segment["id"] == a and segment["expression"]["value"] == 'homeAddress.countryCode = "US"'
    assert segment["mergePolicyId"] == "mp-1" and segment["mergePolicy"]["id"] == "mp-1"
    assert job["metrics"]["totalTime"]["startTimeInMs"] == job["creationTime"]
    assert job["metrics"]["profileSegmentationTime"] == {}
    assert job["_links"]["cancel"] == {"href": f"/segment/jobs/{job['id']}", "method": "DELETE"}
    assert job["_links"]["checkStatus"]["method"] == "GET"
    assert "_internal" not in job and "evaluationTime" not in job  # fixed when the run is launched
    assert jobs.get(job["id"]) == job


def test_star_selects_every_batch_definition(ctx, jobs):
    a = add_definition_row(ctx, "a")
    b = add_definition_row(ctx, "b")
    add_definition_row(ctx, "off", lifecycleState="inactive")
    job = jobs.create([{"segmentId": "*"}])
    assert [s["segmentId"] for s in job["segments"]] == [a, b]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([], "non-empty JSON array"),
        ({"x": 1}, "segments"),
        ([{"segmentId": ""}], "body[0].segmentId"),
        ([{"id": "x"}], "body[0].segmentId"),
        ([{"segmentId": "missing"}], "'missing' was not found"),
    ],
)
def test_bad_bodies_name_the_problem(jobs, body, fragment):
    with pytest.raises(SegmentationError) as err:
        jobs.create(body)
    assert err.value.status == 400 and fragment in err.value.message


def test_star_in_empty_sandbox_is_400(jobs):
    with pytest.raises(SegmentationError, match="has none"):
        jobs.create([{"segmentId": "*"}])


def test_bad_evaluation_time_is_400_naming_the_field(jobs):
    with pytest.raises(SegmentationError, match="evaluation_time: 'yesterday' is not an ISO 8601"):
        jobs.create([{"segmentId": "*"}], evaluation_time="yesterday")


def test_run_request_and_launch_claim(ctx, jobs):
    a = add_definition_row(ctx, "a")
    job = jobs.create([{"segmentId": a}], evaluation_time="2026-03-01T10:00:00Z")
    assert job["evaluationTime"] == "2026-03-01T10:00:00.000Z"
    request = jobs.claim_for_launch(job["id"])
    assert request.run_key == f"{job['id']}:1"
    assert request.job_name == "segment_job"
    assert request.asset_selection == (("segment", f"a__{a.replace('-', '')[:8]}"),)  # no store to refresh
    assert request.partition_key == "2026-03-01"  # the evaluation day
    assert request.all_tags == {
        "segmentation/job_id": job["id"],
        "segmentation/evaluation_time": "2026-03-01T10:00:00.000Z",
        "segmentation/org": ctx.org_id,
        "segmentation/sandbox": "prod",
        "segmentation/kind": "segment_job",
        "segmentation/attempt": "1",
        "dagster/partition": "2026-03-01",
    }
    assert jobs.get(job["id"])["status"] == "QUEUED"
    assert jobs.claim_for_launch(job["id"]) is None  # claimed once
    assert jobs.requeue(job["id"], "test") is True
    assert jobs.claim_for_launch(job["id"]).run_key == f"{job['id']}:2"


def test_launch_false_is_queued_with_caller_id_and_properties(ctx, jobs):
    a = add_definition_row(ctx, "a")
    job = jobs.create(
        [{"segmentId": a}],
        source="scheduler",
        properties={"scheduleId": "s1", "runId": "r1"},
        job_id="j-1",
        launch=False,
    )
    assert (job["id"], job["status"], job["source"]) == ("j-1", "QUEUED", "scheduler")
    assert job["properties"] == {"scheduleId": "s1", "runId": "r1"}
    request = jobs.run_request_for("j-1")
    assert request.run_key == "j-1:1" and "segmentation/evaluation_time" in request.all_tags
    assert jobs.get("j-1")["evaluationTime"] == request.all_tags["segmentation/evaluation_time"]
    assert jobs.claim_for_launch("j-1") is None  # the launcher sensor leaves it alone
    with pytest.raises(SegmentationError) as err:
        jobs.create([{"segmentId": a}], job_id="j-1", launch=False)
    assert err.value.status == 409


def test_status_follows_the_run_and_never_goes_back(ctx, jobs):
    a = add_definition_row(ctx, "a")
    job_id = jobs.create([{"segmentId": a}])["id"]
    jobs.claim_for_launch(job_id)
    assert jobs.sync_with_run(job_id, "STARTED", "run-1")["status"] == "PROCESSING"
    assert jobs.sync_with_run(job_id, "QUEUED", "run-1")["status"] == "PROCESSING"  # late event
    assert jobs.sync_with_run(job_id, "SUCCESS", "run-other")["status"] == "PROCESSING"  # not this job's run
    failed = jobs.sync_with_run(job_id, "FAILURE", "run-1", error="boom")
    assert failed["status"] == "FAILED" and failed["errors"][0]["msg"] == "boom"
    total = failed["metrics"]["totalTime"]
    assert total["totalTimeInMs"] == total["endTimeInMs"] - total["startTimeInMs"] >= 0
    assert jobs.sync_with_run(job_id, "SUCCESS", "run-1")["status"] == "FAILED"  # terminal is final


def test_cancel_new_job_and_conflicts(ctx, jobs):
    a = add_definition_row(ctx, "a")
    job_id = jobs.create([{"segmentId": a}])["id"]
    assert jobs.delete(job_id)["message"] == f"Segment job with id '{job_id}' has been marked for cancelling"
    assert jobs.get(job_id)["status"] == "CANCELLED"
    assert jobs.claim_for_launch(job_id) is None
    jobs.delete(job_id)  # idempotent
    done = jobs.create([{"segmentId": a}])["id"]
    jobs.claim_for_launch(done)
    jobs.sync_with_run(done, "SUCCESS", "r")
    with pytest.raises(SegmentationError) as err:
        jobs.delete(done)
    assert err.value.status == 409
    with pytest.raises(SegmentationError) as err:
        jobs.get("nope")
    assert err.value.status == 404


def test_list_filters_sort_pages_and_bulk_get(ctx, jobs):
    a = add_definition_row(ctx, "a")
    b = add_definition_row(ctx, "b")
    ids = [jobs.create([{"segmentId": s}])["id"] for s in (a, b, a)]
    jobs.delete(ids[1])
    listed = jobs.list()
    assert listed["_page"] == {"totalCount": 3, "pageSize": 3}
    assert [j["id"] for j in listed["children"]] == ids[::-1]  # creationTime:desc
    assert [j["id"] for j in jobs.list(sort="creationTime:asc")["children"]] == ids
    assert [j["id"] for j in jobs.list(status="CANCELLED")["children"]] == [ids[1]]
    assert [
        j["id"] for j in jobs.list(property=f"segments~segmentId=={a}", sort="creationTime:asc")["children"]
    ] == [
        ids[0],
        ids[2],
    ]
    assert jobs.list(property="source==scheduler")["_page"]["totalCount"] == 0
    page = jobs.list(limit="2", sort="creationTime:asc")
    assert [j["id"] for j in page["children"]] == ids[:2]
    assert page["_links"]["next"]["href"].startswith("/segment/jobs?start=2&limit=2")
    assert [j["id"] for j in jobs.list(start="2", limit="2", sort="creationTime:asc")["children"]] == ids[2:]
    for bad in ({"status": "DONE"}, {"sort": "name:asc"}, {"limit": "0"}, {"property": "nonsense"}):
        with pytest.raises(SegmentationError) as err:
            jobs.list(**bad)
        assert err.value.status == 400
    bulk = jobs.bulk_get({"ids": [{"id": ids[0]}, {"id": "nope"}]})["results"]
    assert bulk[ids[0]]["id"] == ids[0] and bulk["nope"]["errors"]["404"][0]["code"] == "UPAPI-113430-404"


def test_other_sandbox_cannot_see_the_job(ctx, jobs):
    from segmentation_pipelines.service.context import ServiceContext

    job_id = jobs.create([{"segmentId": add_definition_row(ctx, "a")}])["id"]
    other = SegmentJobsService(ServiceContext.create(ctx.settings, None, "dev"))
    with pytest.raises(SegmentationError):
        other.get(job_id)
    assert other.list()["_page"]["totalCount"] == 0


def test_wait_runs_in_process_and_records_metrics(ctx):
    a = add_definition_row(ctx, "a")
    b = add_definition_row(ctx, "b")
    jobs = with_probe(ctx, [a, b])
    job = jobs.create([{"segmentId": a}], evaluation_time="2026-03-01T10:00:00Z", wait=True)
    assert job["status"] == "SUCCEEDED", job.get("errors")
    probe = Path(ctx.settings.home) / "probe" / job["id"]
    assert sorted(p.name for p in probe.iterdir()) == [a]  # only the selected definition ran
    assert (probe / a).read_text() == "2026-03-01T10:00:00.000Z"
    metrics = job["metrics"]
    assert metrics["segmentedProfileCounter"] == {a: PROBE_COUNTS["members"]}
    assert metrics["segmentedProfileByStatusCounter"] == {a: {"realized": 2, "existing": 1, "exited": 4}}
    assert metrics["segmentedProfileByNamespaceCounter"] == {a: {"email": 3, "crmId": 2}}
    assert metrics["totalProfiles"] == 10 and metrics["totalProfilesByMergePolicy"] == {"mp-1": 10}
    phase, total = metrics["profileSegmentationTime"], metrics["totalTime"]
    assert phase["totalTimeInMs"] == phase["endTimeInMs"] - phase["startTimeInMs"] >= 0
    assert total["startTimeInMs"] <= phase["startTimeInMs"] <= phase["endTimeInMs"] <= total["endTimeInMs"]
    run = dagster_runs.instance_for(ctx.settings).get_run_by_id(job_and_run(ctx, job["id"]))
    assert run.status.value == "SUCCESS" and run.tags["segmentation/job_id"] == job["id"]


def job_and_run(ctx, job_id):
    from segmentation_pipelines.catalog import models

    with ctx.catalog.session() as session:
        return session.get(models.SegmentJob, job_id).run_id


def test_failed_run_gives_failed_job_with_errors(ctx):
    a = add_definition_row(ctx, "a")
    jobs = with_probe(ctx, [])  # the code location does not know the definition: the run cannot select it
    job = jobs.create([{"segmentId": a}], wait=True)
    assert job["status"] == "FAILED"
    assert job["errors"] and job["errors"][0]["msg"]


def test_cancel_running_in_process_job_within_seconds(ctx):
    a = add_definition_row(ctx, "a")
    jobs = with_probe(ctx, [a], work_s=PROBE_WORK_S)
    job_id = jobs.create([{"segmentId": a}])["id"]  # NEW: run it in a thread as a run worker would
    result = {}
    thread = threading.Thread(target=lambda: result.update(job=jobs.run_in_process(job_id)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while jobs.get(job_id)["status"] != "PROCESSING":
        assert time.monotonic() < deadline and thread.is_alive(), jobs.get(job_id)
        time.sleep(0.05)
    time.sleep(0.5)  # the run is inside its evaluation
    cancelled_at = time.monotonic()
    jobs.delete(job_id)
    assert jobs.get(job_id)["status"] == "CANCELLING"
    thread.join(PROBE_WORK_S / 2)
    took = time.monotonic() - cancelled_at
    assert not thread.is_alive(), f"the run did not stop {took:.1f} s after the cancel"
    assert result["job"]["status"] == "CANCELLED"
    assert took < CANCEL_WITHIN_S, (
        f"cancel took {took:.1f} s (the uncancelled run works {PROBE_WORK_S:.0f} s)"
    )
    run = dagster_runs.instance_for(ctx.settings).get_run_by_id(job_and_run(ctx, job_id))
    assert run.status.value == "CANCELED"
    assert not (Path(ctx.settings.home) / "probe" / job_id).exists()  # nothing of that run was written


@pytest.mark.postgres
def test_job_life_on_a_postgres_catalog(pg_url, tmp_path, monkeypatch):
    from segmentation_pipelines.service.context import ServiceContext
    from segmentation_pipelines.settings import Settings

    settings = Settings(home=tmp_path / "home", catalog_url=pg_url, api_tokens=None)
    monkeypatch.setenv("SEGMENTATION_HOME", str(settings.home))
    monkeypatch.setenv("SEGMENTATION_CATALOG_URL", pg_url)
    ctx = ServiceContext.create(settings, None, "prod")
    try:
        a = add_definition_row(ctx, "a")
        jobs = with_probe(ctx, [a])
        done = jobs.create([{"segmentId": a}], evaluation_time="2026-03-01T10:00:00Z", wait=True)
        assert done["status"] == "SUCCEEDED" and done["metrics"]["segmentedProfileCounter"] == {a: 3}
        queued = jobs.create([{"segmentId": "*"}])["id"]
        assert jobs.claim_for_launch(queued).run_key == f"{queued}:1"
        jobs.delete(queued)
        assert jobs.get(queued)["status"] == "CANCELLING"
        assert [j["id"] for j in jobs.list(status="SUCCEEDED")["children"]] == [done["id"]]
    finally:
        ctx.catalog.dispose()
