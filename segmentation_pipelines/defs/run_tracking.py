"""The sensors that keep a tracked request (a segment job, an export job, an external-audience run;
``service/tracked_runs.py``) in step with its Dagster run: one definition for every kind.

* :func:`status_sensors`: run-status sensors writing a run's outcome back onto the row it runs. Each kind gives its
  run ``kind`` tag, the tag holding the row's id, and the service whose ``sync_with_run(id, status, run_id,
  error=...)`` records the outcome (idempotent: a repeated event changes nothing).
* :func:`reconciler_sensor`: the reconciliation pass (``service/reconcile.py``) of one kind, on a schedule.
* :func:`launcher_sensor`: the pull launcher (architecture §5): every ``NEW`` row becomes a run request (run key
  ``"<id>:<attempt>"``: Dagster launches one run per key, ever) and is claimed. A row whose assets the loaded code
  location does not have yet (created after it loaded) waits and a reload is requested; a kind that gives a
  ``not_loaded`` message fails such a row after ``NOT_LOADED_GRACE_S`` (``SEGP-200409``): a run request naming an
  unknown asset would fail the whole tick.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import dagster as dg

from segmentation_pipelines import code_location
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.dagster_launcher import dagster_run_request, loaded_asset_keys, run_errors
from segmentation_pipelines.launcher import TAG_KIND, TAG_ORG, TAG_SANDBOX
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.reconcile import reconcile
from segmentation_pipelines.service.tracked_runs import TrackedRuns
from segmentation_pipelines.settings import get_settings

NOT_LOADED_GRACE_S = 300  # how long a NEW row waits for its assets to appear in the code location
ERROR_NOT_LOADED = "SEGP-200409"


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


class LaunchMessages(NamedTuple):
    """What a launcher's ticks say, per kind."""

    idle: str  # the skip reason when nothing is NEW
    waiting: str  # the skip reason when rows wait for a reload; ``{n}`` is their number
    # The error of a row failed after the grace (None: it waits for ever); ``{names}``: the missing assets,
    # ``{location}``: the code location's name, ``{grace_s}``: the grace.
    not_loaded: str | None = None
    launching: str | None = None  # logged when the tick launches runs; ``%d``: their number


def launcher_sensor(
    name: str,
    *,
    job_name: str,
    service: type[TrackedRuns],
    description: str,
    interval_s: int,
    missing: Callable[[Any, Any, set[dg.AssetKey]], list[str]],
    messages: LaunchMessages,
    batch: int | None = None,
) -> dg.SensorDefinition:
    """A sensor launching ``job_name`` for the ``NEW`` rows of ``service`` (at most ``batch`` a tick, oldest first).
    ``missing(service, id, loaded)`` names what the row needs that the loaded asset keys lack (nothing: launch)."""

    @dg.sensor(
        name=name,
        job_name=job_name,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )
    def _launcher(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        settings = get_settings()
        catalog = ServiceContext.create(settings).catalog
        loaded = loaded_asset_keys(context)
        requests, waiting = [], 0
        for org, sandbox, ident in service.in_status(catalog, [service.NEW], limit=batch):
            rows = service(ServiceContext.create(settings, org, sandbox))
            absent = [] if loaded is None else missing(rows, ident, loaded)
            if absent:
                grace_s = NOT_LOADED_GRACE_S
                if messages.not_loaded and rows.get(ident)["creationTime"] < now_ms() - grace_s * 1000:
                    msg = messages.not_loaded.format(
                        names=", ".join(absent), location=settings.code_location_name, grace_s=grace_s
                    )
                    rows.sync_with_run(ident, "FAILURE", None, error={"code": ERROR_NOT_LOADED, "msg": msg})
                else:
                    waiting += 1
                    code_location.request_reload(settings)
                continue
            request = rows.claim_for_launch(ident)
            if request is not None:
                requests.append(dagster_run_request(request))
        if not requests:
            return dg.SkipReason(messages.waiting.format(n=waiting) if waiting else messages.idle)
        if messages.launching:
            context.log.info(messages.launching, len(requests))
        return dg.SensorResult(run_requests=requests)

    return _launcher
