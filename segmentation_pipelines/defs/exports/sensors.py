"""Sensors that drive export jobs, as ``defs/jobs/sensors.py`` does for segment jobs.

* ``export_job_launcher``: every ``NEW`` export job becomes a run of ``export_job`` (run key ``"<id>:<attempt>"``);
  a job whose destination asset is not in the loaded code location yet waits for the reload (requested), and fails
  after ``run_tracking.NOT_LOADED_GRACE_S`` (``run_tracking.launcher_sensor``);
* ``export_job_started`` / ``_succeeded`` / ``_canceled`` / ``_failed``: write the run's status onto its job;
* ``export_job_reconciler``: settles jobs whose run ended or vanished unnoticed (``service/reconcile.py``).
"""

from __future__ import annotations

import dagster as dg

from segmentation_pipelines.defs.run_tracking import (
    LaunchMessages,
    launcher_sensor,
    reconciler_sensor,
    status_sensors,
)
from segmentation_pipelines.launcher import (
    EXPORT_JOB,
    KIND_EXPORT_JOB,
    TAG_JOB_ID,
)
from segmentation_pipelines.service.export_jobs import ExportJobsService

LAUNCH_BATCH = 50
LAUNCH_INTERVAL_S = 5
RECONCILE_INTERVAL_S = 30


def _not_loaded(service: ExportJobsService, job_id: int, loaded: set[dg.AssetKey]) -> list[str]:
    """The assets a run of the job selects that the loaded code location does not have."""
    selection = service.run_request_for(job_id).asset_selection
    return ["/".join(k) for k in selection if dg.AssetKey(list(k)) not in loaded]


export_job_launcher = launcher_sensor(
    "export_job_launcher",
    job_name=EXPORT_JOB,
    service=ExportJobsService,
    description="Launches a run of export_job for every NEW export job (run key = job id and attempt).",
    interval_s=LAUNCH_INTERVAL_S,
    missing=_not_loaded,
    messages=LaunchMessages(
        idle="No NEW export jobs.",
        waiting="{n} NEW export job(s) wait for a reload.",
        not_loaded="Assets {names} are not in the code location: reload it.",
    ),
    batch=LAUNCH_BATCH,
)


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
