"""Dagster definitions of the schedules domain: one ``ScheduleDefinition`` per catalog schedule.

Built from the catalog snapshot pinned at code-location load (``defs/snapshot.py``), so the schedules shown in the
Dagster UI are the catalog's. ``default_status`` follows the catalog state (active -> RUNNING); the REST API also
starts/stops the schedule in the instance when the state changes (``service.schedules.DagsterScheduleControl``).
A tick asks the service to create the segment job and returns its run (run key derived from the job id).
"""

from __future__ import annotations

import logging
from typing import Any

import dagster as dg
from dagster._utils.schedules import is_valid_cron_string

from segmentation_pipelines.dagster_launcher import dagster_run_request
from segmentation_pipelines.defs.schedules.state_sync import schedule_state_writeback
from segmentation_pipelines.defs.snapshot import pinned_snapshot
from segmentation_pipelines.launcher import EXPORT_JOB
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.schedules import (
    ACTIVE,
    EXPORT,
    JOB_NAME,
    SchedulesService,
    dagster_schedule_name,
    schedule_snapshot,
)
from segmentation_pipelines.settings import get_settings

log = logging.getLogger(__name__)

SNAPSHOT_KEY = "schedule_catalog_snapshot"


def evaluate_tick(
    row: dict[str, Any], context: dg.ScheduleEvaluationContext
) -> dg.RunRequest | dg.SkipReason:
    """The tick of one catalog schedule at ``context.scheduled_execution_time``."""
    scheduled = context.scheduled_execution_time
    scheduled_ms = int(round(scheduled.timestamp() * 1000))
    ctx = ServiceContext.create(
        get_settings(), org_id=row["org_id"], sandbox=row["sandbox"], request_id=f"{row['id']}-{scheduled_ms}"
    )
    outcome = SchedulesService(ctx).fire(
        row["id"], scheduled, expected_cron=row["dagster_cron"], expected_timezone=row["timezone"]
    )
    if "skip" in outcome:
        return dg.SkipReason(outcome["skip"])
    request = outcome["run_request"]
    context.log.info("Schedule %s: segment job %s, run key %s", row["id"], outcome["job_id"], request.run_key)
    return dagster_run_request(request)


def build_schedule(row: dict[str, Any]) -> dg.ScheduleDefinition:
    """The Dagster schedule of one catalog schedule row (as :func:`schedule_snapshot` returns it)."""

    def tick(context: dg.ScheduleEvaluationContext):
        return evaluate_tick(row, context)

    note = " Each tick creates an export job." if row["type"] == EXPORT else ""
    return dg.ScheduleDefinition(
        name=dagster_schedule_name(row["id"], row["name"]),
        cron_schedule=row["dagster_cron"],
        execution_timezone=row["timezone"],
        job_name=EXPORT_JOB if row["type"] == EXPORT else JOB_NAME,
        execution_fn=tick,
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if row["state"] == ACTIVE else dg.DefaultScheduleStatus.STOPPED
        ),
        description=(
            f"{row['name']} ({row['type']}, {row['org_id']}/{row['sandbox']}): Quartz '{row['cron']}' "
            f"in {row['timezone']}. Catalog schedule {row['id']}.{note}"
        ),
        metadata={
            "schedule_id": row["id"],
            "org": row["org_id"],
            "sandbox": row["sandbox"],
            "type": row["type"],
            "quartz": row["cron"],
        },
    )


def build_schedules(rows: list[dict[str, Any]]) -> list[dg.ScheduleDefinition]:
    schedules = []
    for row in rows:
        if not row.get("dagster_cron") or not is_valid_cron_string(row["dagster_cron"]):
            log.warning(
                "Schedule %s has no valid Dagster cron (%r); not loaded", row["id"], row.get("dagster_cron")
            )
            continue
        schedules.append(build_schedule(row))
    return schedules


def defs() -> dg.Definitions:
    settings = get_settings()
    rows = pinned_snapshot(SNAPSHOT_KEY, lambda: schedule_snapshot(settings))

    return dg.Definitions(schedules=build_schedules(rows), sensors=[schedule_state_writeback])
