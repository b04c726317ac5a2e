"""The sensors that keep a tracked request (a segment job, an export job, an external-audience run;
``service/tracked_runs.py``) in step with its Dagster run: one definition for every kind.

* :func:`status_sensors`: run-status sensors writing a run's outcome back onto the row it runs. Each kind gives its
  run ``kind`` tag, the tag holding the row's id, and the service whose ``sync_with_run(id, status, run_id,
  error=...)`` records the outcome (idempotent: a repeated event changes nothing).
* :func:`reconciler_sensor`: the reconciliation pass (``service/reconcile.py``) of one kind, on a schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import dagster as dg

from segmentation_pipelines.dagster_launcher import run_errors
from segmentation_pipelines.launcher import TAG_KIND, TAG_ORG, TAG_SANDBOX
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.reconcile import reconcile
from segmentation_pipelines.service.tracked_runs import TrackedRuns
from segmentation_pipelines.settings import get_settings


class StatusSensors(NamedTuple):
    started: dg.SensorDefinition
    succeeded: dg.SensorDefinition
    canceled: dg.SensorDefinition
    failed: dg.SensorDefinition


def status_sensors(
    prefix: str,
    *,
    kind: str,
    id_tag: str,
    what: str,
    service: Callable[[ServiceContext], Any],
    interval_s: int,
) -> StatusSensors:
    """``<prefix>_started``, ``_succeeded``, ``_canceled`` and ``_failed`` for the runs tagged ``kind``; ``what``
    names the row in descriptions and logs (``"segment job"``)."""

    def sync(context: dg.RunStatusSensorContext, error: Any = None) -> dg.SkipReason | None:
        run = context.dagster_run
        tags = run.tags
        if tags.get(TAG_KIND) != kind or id_tag not in tags:
            return dg.SkipReason(f"Run {run.run_id} runs no {what}.")
        ctx = ServiceContext.create(get_settings(), tags.get(TAG_ORG), tags.get(TAG_SANDBOX, "prod"))
        row = service(ctx).sync_with_run(tags[id_tag], run.status, run.run_id, error=error)
        if isinstance(row, dict) and "status" in row:
            context.log.info(
                "%s %s is %s (run %s)", what.capitalize(), tags[id_tag], row["status"], run.run_id
            )
        return None

    def on_status(status: dg.DagsterRunStatus, suffix: str) -> dg.SensorDefinition:
        @dg.run_status_sensor(
            name=f"{prefix}_{suffix}",
            run_status=status,
            minimum_interval_seconds=interval_s,
            default_status=dg.DefaultSensorStatus.RUNNING,
            description=f"Writes {status.value} onto the {what} a run runs, when the run reaches it.",
        )
        def _sensor(context: dg.RunStatusSensorContext):
            return sync(context)

        return _sensor

    @dg.run_failure_sensor(
        name=f"{prefix}_failed",
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Marks the {what} a run runs FAILED (with the run's errors) when the run fails.",
    )
    def failed(context: dg.RunFailureSensorContext):
        errors = run_errors(context.instance, context.dagster_run.run_id)
        return sync(context, error=errors or context.failure_event.message)

    return StatusSensors(
        on_status(dg.DagsterRunStatus.STARTED, "started"),
        on_status(dg.DagsterRunStatus.SUCCESS, "succeeded"),
        on_status(dg.DagsterRunStatus.CANCELED, "canceled"),
        failed,
    )


def reconciler_sensor(
    name: str, kind: type[TrackedRuns], interval_s: int, description: str
) -> dg.SensorDefinition:
    """A sensor running the reconciliation pass of ``kind``; its tick says what was done."""

    @dg.sensor(
        name=name,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )
    def _reconciler(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        done = reconcile(get_settings(), kind)
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(done.items()))
        return dg.SkipReason(summary or f"no active {kind.what.lower()}s")

    return _reconciler
