"""The main job: ``segmentation-pipelines demo`` on small demo data runs every demo definition through Dagster."""

from __future__ import annotations

from segmentation_pipelines.cli.demo import run_demo
from segmentation_pipelines.service.demo_definitions import DEMO_DEFINITIONS
from segmentation_pipelines.service.services import Services


def test_demo_runs_two_segment_jobs_over_every_demo_definition(settings, monkeypatch):
    monkeypatch.setenv("SEGMENTATION_HOME", str(settings.home))
    run = run_demo(settings, profiles=3000, events=60_000)
    first, second = run.results["jobs"]
    assert first["status"] == second["status"] == "SUCCEEDED", (first.get("errors"), second.get("errors"))
    ids = {d["id"]: key for key, d in run.results["definitions"].items()}
    assert set(ids) == {s["segmentId"] for s in second["segments"]} and len(ids) == len(DEMO_DEFINITIONS)
    audiences = Services(run.results["context"]).audiences
    for ident in ids:
        before = first["metrics"]["segmentedProfileCounter"][ident]
        after = second["metrics"]["segmentedProfileCounter"][ident]
        by_status = second["metrics"]["segmentedProfileByStatusCounter"][ident]
        assert after == by_status["realized"] + by_status["existing"]
        assert after == before + by_status["realized"] - by_status["exited"]
        page = audiences.members(ident, limit=1)
        assert page["jobId"] == second["id"] and page["counts"]["members"] == after
    assert (
        sum(first["metrics"]["segmentedProfileCounter"].values()) > 0
    )  # the rules find people in the demo data
    report = "\n".join(run.report)
    for demo in DEMO_DEFINITIONS:
        assert demo.name[:40] in report
    assert second["computeGatewayJobId"] in report

    # The demo switches on the sandbox's default daily schedule, in the catalog and in the Dagster instance.
    from dagster._core.scheduler.instigation import InstigatorStatus

    from segmentation_pipelines import dagster_launcher as dagster_runs

    schedule = Services(run.results["context"]).schedules.get(run.results["schedule"]["id"])
    assert schedule["state"] == "active" and schedule["properties"]["segments"] == ["*"]
    name = schedule["dagster"]["scheduleName"]
    assert name in report
    states = {s.instigator_name: s.status for s in dagster_runs.instance_for(settings).all_instigator_state()}
    assert states.get(name) == InstigatorStatus.RUNNING
