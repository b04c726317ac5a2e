"""``external_audience_launcher``: a NEW run waits (for as long as it takes) until the loaded code location has
its audience's asset, then is launched once."""

from __future__ import annotations

import dagster as dg

from segmentation_pipelines import SegmentationClient
from segmentation_pipelines.dagster_launcher import instance_for, load_definitions
from segmentation_pipelines.defs import run_tracking
from segmentation_pipelines.defs.external_audiences.sensors import external_audience_launcher
from segmentation_pipelines.settings import get_settings

from .test_sensor_and_rules import body, landing


def test_a_new_run_waits_for_its_asset_then_is_launched_once(home, monkeypatch):
    client = SegmentationClient(home=home)
    (landing(home) / "a.csv").write_text("email,score\nann@example.com,1\n")
    created = client.external_audiences.create(body("a.csv"))  # its first run waits for a launcher: NEW
    audience_id = client.external_audiences.operation(created["operationId"])["audienceId"]
    (run,) = client.external_audiences.runs(audience_id)["runs"]
    assert run["status"] == "NEW"
    settings = get_settings(home=home)
    instance = instance_for(settings)

    stale = dg.Definitions().get_repository_def()  # loaded before the audience existed
    monkeypatch.setattr(run_tracking, "NOT_LOADED_GRACE_S", -1)  # no grace applies: it never fails
    waiting = external_audience_launcher(dg.build_sensor_context(instance=instance, repository_def=stale))
    assert (
        isinstance(waiting, dg.SkipReason) and waiting.skip_message == "1 run(s) wait for the code location."
    )
    assert client.external_audiences.runs(audience_id)["runs"][0]["status"] == "NEW"

    current = load_definitions(settings).get_repository_def()
    result = external_audience_launcher(dg.build_sensor_context(instance=instance, repository_def=current))
    (request,) = result.run_requests
    assert request.run_key == f"{run['runId']}:1" and request.job_name == "external_audience_ingest"
    assert [k.path for k in request.asset_selection][-1][0] == "external_audience"
    assert client.external_audiences.runs(audience_id)["runs"][0]["status"] == "QUEUED"
    again = external_audience_launcher(dg.build_sensor_context(instance=instance, repository_def=current))
    assert isinstance(again, dg.SkipReason) and again.skip_message == "No NEW runs."
