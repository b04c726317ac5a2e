"""Write a schedule toggled in the Dagster UI back to the catalog (the ``schedule_state_writeback`` sensor).

The REST API writes a state change into Dagster at once (``DagsterScheduleControl``); this is the other way round.
The sensor compares the state Dagster stores for each catalog schedule (RUNNING / STOPPED, set by the UI's toggle,
``dagster schedule start``, GraphQL) with what it saw on its previous evaluation (its cursor). A state that
*changed in Dagster* and differs from the catalog was set outside the API: it is written to the catalog, so the
catalog (which decides whether a tick fires) follows the UI instead of silently overruling it. A difference that did
not come from a change in Dagster (e.g. the API's write to Dagster failed) is left alone: the catalog stays the
source of truth. A schedule without a stored state runs by its ``default_status``, which is its catalog state.
"""

from __future__ import annotations

import json
import logging

import dagster as dg
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import InstigatorStatus

from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.schedules import (
    ACTIVE,
    INACTIVE,
    SchedulesService,
    dagster_schedule_name,
    schedule_snapshot,
)
from segmentation_pipelines.settings import get_settings

log = logging.getLogger(__name__)

SENSOR_NAME = "schedule_state_writeback"
INTERVAL_S = 15


def dagster_states(instance: dg.DagsterInstance, location_name: str) -> dict[str, str]:
    """Schedule name -> ``active``/``inactive`` for every schedule state stored for this code location."""

    out: dict[str, str] = {}
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE):
        selector = state.origin.repository_origin.code_location_origin.location_name
        if selector != location_name:
            continue
        if state.status == InstigatorStatus.RUNNING:
            out[state.instigator_name] = ACTIVE
        elif state.status == InstigatorStatus.STOPPED:
            out[state.instigator_name] = INACTIVE
    return out


def write_back(instance: dg.DagsterInstance, cursor: str | None) -> tuple[list[str], str]:
    """One pass: (messages of the schedules written to the catalog, the new cursor)."""
    settings = get_settings()
    seen: dict[str, str] = json.loads(cursor) if cursor else {}
    stored = dagster_states(instance, settings.code_location_name)
    written: list[str] = []
    for row in schedule_snapshot(settings):
        name = dagster_schedule_name(row["id"], row["name"])
        state = stored.get(name)
        if state is None:  # runs by its default status: the catalog's state
            seen[name] = row["state"]
            continue
        previous = seen.get(name)
        seen[name] = state
        if previous is None or previous == state or state == row["state"]:
            continue
        ctx = ServiceContext.create(settings, org_id=row["org_id"], sandbox=row["sandbox"])
        SchedulesService(ctx).record_dagster_state(row["id"], state)
        written.append(f"{row['name']} ({row['id']}): {row['state']} -> {state}")
    live = {dagster_schedule_name(r["id"], r["name"]) for r in schedule_snapshot(settings)}
    return written, json.dumps({k: v for k, v in sorted(seen.items()) if k in live})


@dg.sensor(
    name=SENSOR_NAME,
    minimum_interval_seconds=INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Writes a schedule started or stopped in the Dagster UI back to the catalog (its state in "
        "/config/schedules), so the catalog follows the UI's toggle."
    ),
)
def schedule_state_writeback(context: dg.SensorEvaluationContext):
    written, cursor = write_back(context.instance, context.cursor)
    context.update_cursor(cursor)
    if not written:
        return dg.SkipReason("No schedule was toggled in Dagster since the last check.")
    for line in written:
        context.log.info("Schedule state written to the catalog: %s", line)
    return dg.SkipReason("Written to the catalog: " + "; ".join(written))
