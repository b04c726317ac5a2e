"""A schedule started or stopped in Dagster (what the UI's toggle does: GraphQL ``startSchedule`` ->
``instance.start_schedule`` on the remote schedule) is written back to the catalog by the
``schedule_state_writeback`` sensor; a difference that did not come from a change in Dagster is left alone."""

from __future__ import annotations

import sys

import dagster as dg
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from segmentation_pipelines import SegmentationClient
from segmentation_pipelines.dagster_launcher import definitions_scope
from segmentation_pipelines.defs.schedules.state_sync import schedule_state_writeback
from segmentation_pipelines.service.schedules import dagster_schedule_name


def _evaluate(instance, cursor):
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        result = schedule_state_writeback.evaluate_tick(context)
        return result.cursor, result.skip_message


def test_a_ui_toggle_is_written_back(settings, monkeypatch):
    monkeypatch.setenv("SEGMENTATION_HOME", str(settings.home))
    monkeypatch.delenv("SEGMENTATION_CATALOG_URL", raising=False)
    monkeypatch.delenv("SEGMENTATION_DAGSTER_URL", raising=False)
    client = SegmentationClient(home=settings.home)
    created = client.schedules.create(
        {"name": "nightly", "type": "batch_segmentation", "properties": {"segments": ["*"]}}
    )
    assert created["state"] == "inactive"
    name = dagster_schedule_name(created["id"], created["name"])
    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            executable_path=sys.executable, module_name="segmentation_pipelines.definitions"
        ),
        location_name=settings.code_location_name,
    )
    with dg.instance_for_test() as instance:
        with definitions_scope(instance), origin.create_location(instance) as location:
            remote = location.get_repository("__repository__").get_schedule(name)
            cursor, _ = _evaluate(instance, None)  # no stored state yet: default status = catalog state

            instance.start_schedule(remote)  # the UI's "start"
            cursor, message = _evaluate(instance, cursor)
            assert "nightly" in message and "inactive -> active" in message
            assert client.schedules.get(created["id"])["state"] == "active"

            cursor, message = _evaluate(instance, cursor)  # nothing changed since
            assert message.startswith("No schedule was toggled")

            # The API deactivates it; its write to Dagster did not happen here (no prepared instance): Dagster
            # still says RUNNING, unchanged, so the catalog is not overwritten.
            client.schedules.update(created["id"], [{"op": "add", "path": "/state", "value": "inactive"}])
            cursor, message = _evaluate(instance, cursor)
            assert message.startswith("No schedule was toggled")
            assert client.schedules.get(created["id"])["state"] == "inactive"

            state = instance.get_instigator_state(remote.get_remote_origin_id(), remote.selector_id)
            instance.stop_schedule(state.instigator_origin_id, state.selector_id, remote)  # the UI's "stop"
            instance.start_schedule(remote)
            cursor, message = _evaluate(instance, cursor)  # stopped and started again between two checks
            assert message.startswith("No schedule was toggled")
            instance.stop_schedule(state.instigator_origin_id, state.selector_id, remote)
            cursor, message = _evaluate(instance, cursor)
            assert message.startswith(
                "No schedule was toggled"
            )  # stopped in Dagster = inactive in the catalog
            instance.start_schedule(remote)
            cursor, message = _evaluate(instance, cursor)
            assert "inactive -> active" in message
            assert client.schedules.get(created["id"])["state"] == "active"
