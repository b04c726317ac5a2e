"""``profile_store_refresher``: under a daemon, materializes whatever part of a sandbox's profile store is stale.

Ingestion already brings the store current before it returns; this sensor catches the rest: a refresh that failed
or was killed, a deleted batch, a merge policy created or changed. One run per state of a sandbox's inputs (run key
= a digest of its batches and merge policies), selecting only assets the loaded code location has.
"""

from __future__ import annotations

import dagster as dg

from segmentation_pipelines.dagster_launcher import dagster_run_request, loaded_asset_keys
from segmentation_pipelines.launcher import PROFILE_STORE_JOB
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.profile_store import ProfileStoreService, sandboxes_with_data
from segmentation_pipelines.settings import get_settings

INTERVAL_S = 30  # a catch-up: ingestion refreshes the store itself


@dg.sensor(
    name="profile_store_refresher",
    job_name=PROFILE_STORE_JOB,
    minimum_interval_seconds=INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Refreshes the stale parts of each sandbox's profile store (identity graph, events, merged profiles).",
)
def profile_store_refresher(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    settings = get_settings()
    catalog = ServiceContext.create(settings).catalog
    loaded = loaded_asset_keys(context)
    requests = []
    for org, sandbox in sandboxes_with_data(catalog):
        store = ProfileStoreService(ServiceContext.create(settings, org, sandbox))
        request = store.refresh_request(
            "stale store", request_id=f"store:{org}:{sandbox}:{store.target_key()}"
        )
        if request is None:
            continue
        run = dagster_run_request(request)
        if loaded is not None:
            keys = [k for k in run.asset_selection or [] if k in loaded]
            if not keys:
                continue
            run = run.with_replaced_attrs(asset_selection=keys)
        requests.append(run)
    if not requests:
        return dg.SkipReason("Every profile store is current.")
    return dg.SensorResult(run_requests=requests)
