"""Cancelling and killing a segment job in the middle of a real evaluation (demo data large enough to take a while).

* Cancel: the job ends ``CANCELLED`` within seconds, its run ``CANCELED``, and the audiences still show the
  previous evaluation (nothing of the cancelled run is visible).
* Kill -9 of the process running the job: the reconciliation pass ends it ``FAILED`` (not stuck ``PROCESSING``),
  the previous membership is intact, and a new job succeeds.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from segmentation_pipelines import dagster_launcher as dagster_runs
from segmentation_pipelines.catalog import models
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.reconcile import reconcile
from segmentation_pipelines.service.segment_jobs import SegmentJobsService
from segmentation_pipelines.service.services import Services
from segmentation_pipelines.settings import Settings

from .conftest import CANCEL_WITHIN_S, dagster_daemon

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
# Demo data of a realistic size; the demo definitions alone evaluate in about a second, so the cancels and kills
# below run a job that also holds SLOW_PQL, which keeps the evaluation busy for tens of seconds.
PROFILES, EVENTS = 40_000, 2_400_000


# Pairs of events of one profile: tens of seconds on this data, so a cancel lands mid-evaluation however fast the
# other definitions have become (with them alone an evaluation takes ~1 s and the cancel raced the publish).
SLOW_PQL = (
    'select A from xEvent where A.eventType = "commerce.productViews", B from xEvent where '
    'B.eventType = "web.webpagedetails.pageViews" and B.timestamp occurs < 1 days after A.timestamp'
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Demo data, the demo definitions, and one finished job the day before (the membership to protect)."""
    from segmentation_pipelines.cli.demo_data import build_demo
    from segmentation_pipelines.service.demo_definitions import create_demo_definitions

    settings = Settings(
        home=tmp_path_factory.mktemp("interrupts") / "home", catalog_url=None, api_tokens=None
    )
    saved = os.environ.get("SEGMENTATION_HOME")
    os.environ["SEGMENTATION_HOME"] = str(settings.home)
    try:
        summary = build_demo(settings, profiles=PROFILES, events=EVENTS)
        ctx = ServiceContext.create(settings, None, "prod")
        services = Services(ctx)
        ids = [d["id"] for d in create_demo_definitions(services.segment_definitions).values()]
        as_of = dt.datetime.fromisoformat(summary["generated"]["as_of"]).replace(tzinfo=dt.UTC)
        body = [{"segmentId": i} for i in ids]
        slow = services.segment_definitions.create(
            {
                "name": "Product view followed by a page view within a day (slow on purpose)",
                "schema": {"name": "_xdm.context.profile"},
                "expression": {"type": "PQL", "format": "pql/text", "value": SLOW_PQL},
            }
        )
        baseline = services.segment_jobs.create(body, evaluation_time=as_of - dt.timedelta(days=1), wait=True)
        assert baseline["status"] == "SUCCEEDED", baseline.get("errors")
        yield {
            "settings": settings,
            "ctx": ctx,
            "services": services,
            "ids": ids,
            "body": body,
            # The demo definitions plus the slow one: cancels and kills land mid-evaluation.
            "slow_body": body + [{"segmentId": slow["id"]}],
            "as_of": as_of,
            "baseline": baseline,
        }
    finally:
        if saved is None:
            os.environ.pop("SEGMENTATION_HOME", None)
        else:
            os.environ["SEGMENTATION_HOME"] = saved


def published(world) -> dict[str, tuple[str | None, str | None]]:
    """Per audience: (evaluation time, job id) of the membership readers see now."""
    audiences = world["services"].audiences
    out = {}
    for ident in world["ids"]:
        page = audiences.members(ident, limit=1)
        out[ident] = (page["evaluationTime"], page["jobId"])
    return out


def run_id_of(world, job_id):
    with world["ctx"].catalog.session() as session:
        return session.get(models.SegmentJob, job_id).run_id


def wait_until_evaluating(world, job_id, alive=lambda: True, timeout=120) -> str:
    """The job's run id, once its evaluation has started (the op's first log line is in the event log)."""
    return evaluating_record(world, job_id, alive, timeout)[0]


def evaluating_record(world, job_id, alive=lambda: True, timeout=120) -> tuple[str, int]:
    """(run id, pid of the process evaluating) once the evaluation has started."""
    instance = dagster_runs.instance_for(world["settings"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert alive(), "the process running the job ended early"
        run_id = run_id_of(world, job_id)
        if run_id is None:  # launched by a sensor: the run carries the job id
            runs = instance.get_runs(dg.RunsFilter(tags={"segmentation/job_id": job_id}), limit=1)
            run_id = runs[0].run_id if runs else None
        if run_id and instance.get_run_by_id(run_id) is not None:
            records = instance.all_logs(run_id)
            if any(r.user_message and r.user_message.startswith("Evaluating") for r in records):
                starts = [
                    r.dagster_event.pid
                    for r in records
                    if r.is_dagster_event and r.dagster_event.is_step_start
                ]
                return run_id, starts[-1]
        time.sleep(0.1)
    raise AssertionError(f"the evaluation did not start: job {world['services'].segment_jobs.get(job_id)}")


def wait_for_status(world, job_id, statuses, timeout) -> dict:
    jobs = world["services"].segment_jobs
    deadline = time.monotonic() + timeout
    while (job := jobs.get(job_id))["status"] not in statuses:
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    return job


def test_cancel_mid_evaluation(world):
    jobs = world["services"].segment_jobs
    before = published(world)
    job_id = jobs.create(world["slow_body"], evaluation_time=world["as_of"])["id"]
    result = {}
    worker = threading.Thread(target=lambda: result.update(job=jobs.run_in_process(job_id)), daemon=True)
    worker.start()
    run_id = wait_until_evaluating(world, job_id, alive=worker.is_alive)
    cancelled_at = time.monotonic()
    jobs.delete(job_id)
    worker.join(120)
    took = time.monotonic() - cancelled_at
    assert not worker.is_alive(), f"the run did not stop {took:.1f} s after the cancel"
    # CANCELLED (not SUCCEEDED) and nothing published (below) prove the evaluation was cut short.
    assert result["job"]["status"] == "CANCELLED", result["job"].get("errors")
    print(f"cancel took {took:.2f} s")
    assert took < CANCEL_WITHIN_S, f"cancel took {took:.1f} s"
    assert (
        dagster_runs.instance_for(world["settings"]).get_run_by_id(run_id).status
        == dg.DagsterRunStatus.CANCELED
    )
    assert published(world) == before


def test_killed_run_process_fails_the_job_and_keeps_membership(world, monkeypatch):
    jobs = world["services"].segment_jobs
    before = published(world)
    job_id = jobs.create(world["slow_body"], evaluation_time=world["as_of"])["id"]
    env = {**os.environ, "SEGMENTATION_HOME": str(world["settings"].home), "PYTHONPATH": str(REPO)}
    code = (
        "import sys; from segmentation_pipelines.service.context import ServiceContext;"
        "from segmentation_pipelines.service.segment_jobs import SegmentJobsService;"
        "from segmentation_pipelines.settings import get_settings;"
        "SegmentJobsService(ServiceContext.create(get_settings(), None, 'prod')).run_in_process(sys.argv[1])"
    )
    worker = subprocess.Popen([sys.executable, "-c", code, job_id], env=env, cwd=REPO)
    try:
        run_id = wait_until_evaluating(world, job_id, alive=lambda: worker.poll() is None)
        time.sleep(0.3)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    instance = dagster_runs.instance_for(world["settings"])
    assert jobs.get(job_id)["status"] == "PROCESSING"
    # Whichever writer gets there first, a killed worker ends the job SEGP-200501: here a read of the job (as the
    # run-failure sensor or a polling client would) settles it between reconciliation ending the lost run and
    # reconciliation writing its own outcome.
    end_lost_run = dagster_runs.DagsterLauncher.end_lost_run
    first = {}

    def end_then_read(launcher, run):
        info = end_lost_run(launcher, run)
        first.update(jobs.get(job_id))
        return info

    monkeypatch.setattr(dagster_runs.DagsterLauncher, "end_lost_run", end_then_read)
    reconcile(world["settings"], SegmentJobsService, grace_s=0)
    monkeypatch.undo()
    assert first["status"] == "FAILED" and first["errors"][0]["code"] == "SEGP-200501", first
    job = jobs.get(job_id)
    assert job["status"] == "FAILED" and job["errors"], job
    assert job["errors"][0]["code"] == "SEGP-200501", job["errors"]
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    assert published(world) == before

    again = jobs.create(world["body"], evaluation_time=world["as_of"], wait=True)
    assert again["status"] == "SUCCEEDED", again.get("errors")
    assert set(published(world).values()) == {(again["evaluationTime"], again["id"])}


@pytest.fixture(scope="module")
def daemon(world, tmp_path_factory):
    """A real dagster-daemon on the world's home: sensors launch runs in code-server worker processes."""
    with dagster_daemon(world["settings"], tmp_path_factory.mktemp("daemon")) as process:
        yield process


def test_daemon_cancel_terminates_the_run_mid_evaluation(world, daemon):
    jobs = world["services"].segment_jobs
    before = published(world)
    job_id = jobs.create(world["slow_body"], evaluation_time=world["as_of"])[
        "id"
    ]  # NEW: the sensor launches it
    run_id, _ = evaluating_record(world, job_id, alive=lambda: daemon.poll() is None, timeout=240)
    time.sleep(0.3)
    cancelled_at = time.monotonic()
    jobs.delete(job_id)
    instance = dagster_runs.instance_for(world["settings"])
    while not instance.get_run_by_id(run_id).is_finished:
        assert time.monotonic() - cancelled_at < 120, instance.get_run_by_id(run_id).status
        time.sleep(0.1)
    run_took = time.monotonic() - cancelled_at
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED
    assert run_took < CANCEL_WITHIN_S, f"the run took {run_took:.1f} s to stop"
    job = wait_for_status(world, job_id, ("CANCELLED", "FAILED", "SUCCEEDED"), timeout=60)
    print(
        f"daemon cancel: run CANCELED after {run_took:.2f} s, job {job['status']} after "
        f"{time.monotonic() - cancelled_at:.2f} s"
    )
    assert job["status"] == "CANCELLED"
    assert published(world) == before


def test_daemon_killed_step_process_fails_the_job(world, daemon):
    jobs = world["services"].segment_jobs
    before = published(world)
    job_id = jobs.create(world["slow_body"], evaluation_time=world["as_of"])["id"]
    run_id, pid = evaluating_record(world, job_id, alive=lambda: daemon.poll() is None, timeout=240)
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    job = wait_for_status(world, job_id, ("CANCELLED", "FAILED", "SUCCEEDED"), timeout=120)
    assert job["status"] == "FAILED" and job["errors"], job
    assert job["errors"][0]["code"] == "SEGP-200501", job["errors"]  # a lost worker, as the docs say
    instance = dagster_runs.instance_for(world["settings"])
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    assert published(world) == before

    again = jobs.create(world["body"], evaluation_time=world["as_of"])["id"]
    done = wait_for_status(world, again, ("CANCELLED", "FAILED", "SUCCEEDED"), timeout=240)
    assert done["status"] == "SUCCEEDED", done.get("errors")
    assert set(published(world).values()) == {(done["evaluationTime"], again)}
