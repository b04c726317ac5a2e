"""Sensors that drive export jobs, as ``defs/jobs/sensors.py`` does for segment jobs.

* ``export_job_launcher``: every ``NEW`` export job becomes a run of ``export_job`` (run key ``"<id>:<attempt>"``);
  a job whose destination asset is not in the loaded code location yet waits for the reload (requested), and fails
  after ``NOT_LOADED_GRACE_S``;
* ``export_job_started`` / ``_succeeded`` / ``_canceled`` / ``_failed``: write the run's status onto its job;
* ``export_job_reconciler``: settles jobs whose run ended or vanished unnoticed (``service/reconcile.py``).
"""

from __future__ import annotations

import dagster as dg

from segmentation_pipelines import code_location
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.dagster_launcher import dagster_run_request, loaded_asset_keys
from segmentation_pipelines.defs.run_tracking import reconciler_sensor, status_sensors
from segmentation_pipelines.launcher import (
    EXPORT_JOB,
    KIND_EXPORT_JOB,
    TAG_JOB_ID,
)
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.export_jobs import NEW, ExportJobsService
from segmentation_pipelines.settings import get_settings

LAUNCH_BATCH = 50
LAUNCH_INTERVAL_S = 5
RECONCILE_INTERVAL_S = 30
NOT_LOADED_GRACE_S = 300
ERROR_NOT_LOADED = "SEGP-200409"


@dg.sensor(
    name="export_job_launcher",
    job_name=EXPORT_JOB,
    minimum_interval_seconds=LAUNCH_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches a run of export_job for every NEW export job (run key = job id and attempt).",
)
def export_job_launcher(context: dg.SensorEvaluationContext):
    settings = get_settings()
    catalog = ServiceContext.create(settings).catalog
    loaded = loaded_asset_keys(context)
    requests, waiting = [], 0
    for org, sandbox, job_id in ExportJobsService.in_status(catalog, [NEW], limit=LAUNCH_BATCH):
        service = ExportJobsService(ServiceContext.create(settings, org, sandbox))
        request = service.run_request_for(job_id)
        missing = [
            k for k in request.asset_selection if loaded is not None and dg.AssetKey(list(k)) not in loaded
        ]
        if missing:
            if service.get(job_id)["creationTime"] < now_ms() - NOT_LOADED_GRACE_S * 1000:
                names = ", ".join("/".join(k) for k in missing)
                error = {
                    "code": ERROR_NOT_LOADED,
                    "msg": f"Assets {names} are not in the code location: reload it.",
                }
                service.sync_with_run(job_id, "FAILURE", None, error=error)
            else:
                waiting += 1
                code_location.request_reload(settings)
            continue
        claimed = service.claim_for_launch(job_id)
        if claimed is not None:
            requests.append(dagster_run_request(claimed))
    if not requests:
        return dg.SkipReason(
            f"{waiting} NEW export job(s) wait for a reload." if waiting else "No NEW export jobs."
        )
    return dg.SensorResult(run_requests=requests)


export_job_started, export_job_succeeded, export_job_canceled, export_job_failed = status_sensors(
    "export_job",
    kind=KIND_EXPORT_JOB,
    id_tag=TAG_JOB_ID,
    what="export job",
    service=ExportJobsService,
    interval_s=LAUNCH_INTERVAL_S,
)


export_job_reconciler = reconciler_sensor(
    "export_job_reconciler",
    ExportJobsService,
    RECONCILE_INTERVAL_S,
    "Settles export jobs left PROCESSING whose run ended or vanished.",
)


SENSORS = [
    export_job_launcher,
    export_job_started,
    export_job_succeeded,
    export_job_canceled,
    export_job_failed,
    export_job_reconciler,
]
