"""Sensors that drive segment jobs: launch ``NEW`` jobs, write run outcomes back, reconcile what was missed.

* ``segment_job_launcher`` (pull, architecture §5): every ``NEW`` job becomes a ``RunRequest`` of ``segment_job``
  with run key ``"<job id>:<attempt>"`` (Dagster launches one run per key, ever), and the job turns ``QUEUED``.
  A job naming definitions the loaded code location has no asset for yet waits (a reload is requested), and fails
  after ``NOT_LOADED_GRACE_S``: a run request with an unknown asset would fail the whole tick.
* ``segment_job_started`` / ``_succeeded`` / ``_canceled`` / ``_failed``: run-status sensors writing the run's
  status onto its job (``sync_with_run`` is idempotent: a repeated or late event changes nothing).
* ``segment_job_reconciler``: the pass that repairs jobs whose run ended or vanished unnoticed (``reconcile.py``).

Runs are recognised by their tags (``segmentation/kind = segment_job``), whoever launched them (this sensor,
a schedule, the UI with the tags), so these sensors need no handle on the job definition.
"""

from __future__ import annotations

import dagster as dg

from segmentation_pipelines import code_location
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.dagster_launcher import dagster_run_request, loaded_asset_keys
from segmentation_pipelines.defs.run_tracking import reconciler_sensor, status_sensors
from segmentation_pipelines.launcher import (
    KIND_SEGMENT_JOB,
    SEGMENT_JOB,
    TAG_JOB_ID,
)
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.segment_jobs import NEW, SegmentJobsService
from segmentation_pipelines.settings import get_settings

LAUNCH_BATCH = 50  # jobs launched per tick; the rest wait for the next tick (a tick must finish within 60 s)
# The daemon evaluates sensors at most every 5 s anyway (dagster/_daemon/sensor.py MIN_INTERVAL_LOOP_TIME).
LAUNCH_INTERVAL_S = 5
RECONCILE_INTERVAL_S = 30
NOT_LOADED_GRACE_S = 300  # how long a job waits for its definitions to appear in the code location
ERROR_NOT_LOADED = "SEGP-200409"


def _not_loaded(service: SegmentJobsService, job_id: str, loaded: set[dg.AssetKey] | None) -> list[str]:
    """Definitions of the job that the loaded code location has no asset for (created after it loaded)."""
    if loaded is None:
        return []
    return [i for i, key in service.definition_keys(job_id).items() if dg.AssetKey(key) not in loaded]


@dg.sensor(
    name="segment_job_launcher",
    job_name=SEGMENT_JOB,
    minimum_interval_seconds=LAUNCH_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches a run of segment_job for every NEW segment job (run key = job id and attempt).",
)
def segment_job_launcher(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    settings = get_settings()
    catalog = ServiceContext.create(settings).catalog
    loaded = loaded_asset_keys(context)
    requests, waiting = [], 0
    for org, sandbox, job_id in SegmentJobsService.in_status(catalog, [NEW], limit=LAUNCH_BATCH):
        service = SegmentJobsService(ServiceContext.create(settings, org, sandbox))
        missing = _not_loaded(service, job_id, loaded)
        if missing:
            # A run request naming an unknown asset would fail the whole tick: wait for the reload instead.
            if service.get(job_id)["creationTime"] < now_ms() - NOT_LOADED_GRACE_S * 1000:
                error = {
                    "code": ERROR_NOT_LOADED,
                    "msg": f"Segment definition(s) {', '.join(missing)} are not in the Dagster code location "
                    f"'{settings.code_location_name}' after {NOT_LOADED_GRACE_S} s: reload the code location.",
                }
                service.sync_with_run(job_id, "FAILURE", None, error=error)
            else:
                waiting += 1
                code_location.request_reload(settings)
            continue
        request = service.claim_for_launch(job_id)
        if request is not None:
            requests.append(dagster_run_request(request))
    if not requests:
        reason = (
            f"{waiting} NEW job(s) wait for the code location to load their definitions." if waiting else ""
        )
        return dg.SkipReason(reason or "No NEW segment jobs.")
    context.log.info("Launching %d segment job(s)", len(requests))
    return dg.SensorResult(run_requests=requests)


segment_job_started, segment_job_succeeded, segment_job_canceled, segment_job_failed = status_sensors(
    "segment_job",
    kind=KIND_SEGMENT_JOB,
    id_tag=TAG_JOB_ID,
    what="segment job",
    service=SegmentJobsService,
    interval_s=LAUNCH_INTERVAL_S,
)


segment_job_reconciler = reconciler_sensor(
    "segment_job_reconciler",
    SegmentJobsService,
    RECONCILE_INTERVAL_S,
    "Repairs segment jobs left QUEUED/PROCESSING/CANCELLING whose run ended or vanished.",
)


SENSORS = [
    segment_job_launcher,
    segment_job_started,
    segment_job_succeeded,
    segment_job_canceled,
    segment_job_failed,
    segment_job_reconciler,
]
