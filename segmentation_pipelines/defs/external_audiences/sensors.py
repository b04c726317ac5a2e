"""Sensors of external-audience ingestion: file arrivals, launches, outcomes, reconciliation, TTL maintenance.

* ``external_audience_files`` (file arrival): for every audience whose source in the landing area changed (its
  files' fingerprint), records a differential run and launches it with run key ``<audience id>:<fingerprint>``
  (Dagster launches one run per key, ever: the same files are never ingested twice by the sensor).
* ``external_audience_launcher``: launches every ``NEW`` run (API or create) with run key ``<run id>:<attempt>``.
  A run whose audience has no asset in the loaded code location yet waits for a reload.
* ``external_audience_started`` / ``_succeeded`` / ``_failed`` / ``_canceled``: run-status sensors writing the
  outcome onto the run (idempotent); ``external_audience_reconciler`` repairs what they missed.
* ``external_audience_maintenance``: exits members whose TTL passed, re-resolves pending identities.
"""

from __future__ import annotations

import dagster as dg

from segmentation_pipelines import code_location
from segmentation_pipelines.dagster_launcher import dagster_run_request, loaded_asset_keys
from segmentation_pipelines.defs.run_tracking import (
    LaunchMessages,
    launcher_sensor,
    reconciler_sensor,
    status_sensors,
)
from segmentation_pipelines.launcher import TAG_REQUEST_ID
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.external_audience_ingestion import ExternalAudienceIngestion
from segmentation_pipelines.service.external_audience_runs import (
    JOB_NAME,
    KIND,
    ExternalAudienceRunsService,
    asset_key,
)
from segmentation_pipelines.service.external_audiences import audiences_everywhere
from segmentation_pipelines.settings import get_settings

INTERVAL_S = 5
FILES_INTERVAL_S = 15
RECONCILE_INTERVAL_S = 30
MAINTENANCE_INTERVAL_S = 60


def _sandboxes(settings) -> list[tuple[str, str]]:
    catalog = ServiceContext.create(settings).catalog
    return sorted({(org, sandbox) for org, sandbox, _ in audiences_everywhere(catalog)})


def _request(service: ExternalAudienceRunsService, run_id: str, run_key: str) -> dg.RunRequest | None:
    request = service.claim_for_launch(run_id)
    if request is None:
        return None
    return dagster_run_request(request).with_replaced_attrs(run_key=run_key)


def _not_loaded(service: ExternalAudienceRunsService, run_id: str, loaded: set[dg.AssetKey]) -> list[str]:
    """The run's audience asset when the loaded code location does not have it."""
    key = asset_key(service.get_run_audience(run_id))
    return [] if dg.AssetKey(key) in loaded else ["/".join(key)]


def _loaded(context, service: ExternalAudienceRunsService, run_id: str) -> bool:
    keys = loaded_asset_keys(context)
    return keys is None or not _not_loaded(service, run_id, keys)


@dg.sensor(
    name="external_audience_files",
    job_name=JOB_NAME,
    minimum_interval_seconds=FILES_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ingests an external audience's source again when its files in the landing area change "
    "(run key = audience id and file fingerprint).",
)
def external_audience_files(context: dg.SensorEvaluationContext):
    settings = get_settings()
    requests = []
    for org, sandbox in _sandboxes(settings):
        ingestion = ExternalAudienceIngestion(ServiceContext.create(settings, org, sandbox))
        service = ingestion.runs
        for run_id, fp in ingestion.arrivals():
            if not _loaded(context, service, run_id):
                code_location.request_reload(settings)
                continue  # stays NEW: the launcher sensor launches it once the code location has its asset
            request = _request(service, run_id, f"{service.get_run_audience(run_id)}:{fp}")
            if request is not None:
                requests.append(request)
    if not requests:
        return dg.SkipReason("No new files for any external audience.")
    context.log.info("Ingesting new files of %d external audience(s)", len(requests))
    return dg.SensorResult(run_requests=requests)


external_audience_launcher = launcher_sensor(
    "external_audience_launcher",
    job_name=JOB_NAME,
    service=ExternalAudienceRunsService,
    description="Launches a run of external_audience_ingest for every NEW external-audience run.",
    interval_s=INTERVAL_S,
    missing=_not_loaded,
    # No not_loaded message: a run waits for its audience's asset for as long as it takes.
    messages=LaunchMessages(idle="No NEW runs.", waiting="{n} run(s) wait for the code location."),
)


(
    external_audience_started,
    external_audience_succeeded,
    external_audience_canceled,
    external_audience_failed,
) = status_sensors(
    "external_audience",
    kind=KIND,
    id_tag=TAG_REQUEST_ID,
    what="external-audience run",
    service=ExternalAudienceRunsService,
    interval_s=INTERVAL_S,
)


external_audience_reconciler = reconciler_sensor(
    "external_audience_reconciler",
    ExternalAudienceRunsService,
    RECONCILE_INTERVAL_S,
    "Repairs external-audience runs left QUEUED/PROCESSING whose Dagster run ended or vanished.",
)


@dg.sensor(
    name="external_audience_maintenance",
    minimum_interval_seconds=MAINTENANCE_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Exits external-audience members whose TTL passed; resolves pending identities after the "
    "profile store changed.",
)
def external_audience_maintenance(context: dg.SensorEvaluationContext):
    settings = get_settings()
    done = 0
    for org, sandbox in _sandboxes(settings):
        done += ExternalAudienceIngestion(ServiceContext.create(settings, org, sandbox)).maintain()
    return dg.SkipReason(f"{done} external audience(s) republished.")


SENSORS = [
    external_audience_files,
    external_audience_launcher,
    external_audience_started,
    external_audience_succeeded,
    external_audience_canceled,
    external_audience_failed,
    external_audience_reconciler,
    external_audience_maintenance,
]
