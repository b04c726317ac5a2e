"""Export destinations as Dagster assets: ``exports/<datasetId>``, one per dataset export jobs write to, downstream
of the segment assets exported to it, in one subsettable ``multi_asset`` (``export_audiences``).

The destinations come from the catalog (export jobs and export schedules) when the code location loads, pinned for
run workers (``defs/snapshot.py``). A run of ``export_job`` selects one destination's asset, after the segments it
reads when the export evaluates them first; the asset runs the export job named by the run's tags
(:meth:`ExportJobsService.execute`) and records its counts.
"""

import time
from typing import Any

import dagster as dg

from segmentation_pipelines.catalog import Catalog
from segmentation_pipelines.defs.profiles.assets import GROUP as PROFILES_GROUP
from segmentation_pipelines.defs.segments.assets import GROUP as SEGMENTS_GROUP
from segmentation_pipelines.defs.segments.assets import entry_key
from segmentation_pipelines.defs.snapshot import pinned_snapshot
from segmentation_pipelines.engine.export import ExportCancelled
from segmentation_pipelines.launcher import (
    EXPORT_JOB,
    KIND_EXPORT_JOB,
    TAG_JOB_ID,
    TAG_KIND,
    TAG_ORG,
    TAG_SANDBOX,
    export_asset_key,
)
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.export_destinations import destinations_snapshot
from segmentation_pipelines.service.export_jobs import ExportJobsService
from segmentation_pipelines.settings import get_settings

SNAPSHOT_KEY = "export_destinations_snapshot"
GROUP = "exports"
ASSET_NAME = "export_audiences"


def fetch_snapshot() -> list[dict[str, Any]]:

    settings = get_settings()
    settings.ensure_home()
    return destinations_snapshot(Catalog.for_url(settings.resolved_catalog_url))


def _spec(entry: dict[str, Any], segments: dict[tuple[str, str, str], list[str]]) -> dg.AssetSpec:
    deps = [
        dg.AssetKey(segments[(entry["org_id"], entry["sandbox"], s)])
        for s in entry["segments"]
        if (entry["org_id"], entry["sandbox"], s) in segments
    ]
    return dg.AssetSpec(
        key=dg.AssetKey(export_asset_key(entry["dataset_id"])),
        description=f"Export destination {entry['dataset_id']} ({entry['org_id']}/{entry['sandbox']}): a dataset id, "
        "or folder_/postgres_ for the extensions. "
        "Materialized by export jobs (POST /export/jobs); each materialization is one export.",
        deps=deps,
        group_name=GROUP,
        kinds={"parquet", "duckdb"},
        skippable=True,
        metadata={"dataset_id": entry["dataset_id"], "org": entry["org_id"], "sandbox": entry["sandbox"]},
    )


def _should_cancel(context: dg.AssetExecutionContext, inner):
    state = {"at": 0.0, "value": False}

    def check() -> bool:
        if state["value"] or inner():
            state["value"] = True
        elif time.monotonic() - state["at"] >= 1.0:
            state["at"] = time.monotonic()
            run = context.instance.get_run_by_id(context.run_id)
            state["value"] = run is not None and run.status in (
                dg.DagsterRunStatus.CANCELING,
                dg.DagsterRunStatus.CANCELED,
            )
        return state["value"]

    return check


def build_export_audiences(snapshot: list[dict[str, Any]], segment_snapshot: list[dict[str, Any]]):
    if not snapshot:
        return None
    segments = {(e["org_id"], e["sandbox"], e["id"]): entry_key(e).path for e in segment_snapshot}
    by_key = {dg.AssetKey(export_asset_key(e["dataset_id"])): e for e in snapshot}

    @dg.multi_asset(specs=[_spec(e, segments) for e in snapshot], can_subset=True, name=ASSET_NAME)
    def export_audiences(context: dg.AssetExecutionContext):

        tags = context.run.tags
        if tags.get(TAG_KIND) != KIND_EXPORT_JOB or not tags.get(TAG_JOB_ID):
            raise dg.Failure(
                "An export destination is materialized by an export job: POST /export/jobs (or "
                "client.export_jobs.create) names the segments, filters and fields."
            )
        job_id = int(tags[TAG_JOB_ID])
        ctx = ServiceContext.create(get_settings(), tags.get(TAG_ORG), tags.get(TAG_SANDBOX, "prod"))
        service = ExportJobsService(ctx)
        for key in context.selected_asset_keys:
            entry = by_key[key]
            started = time.monotonic()
            try:
                summary = service.execute(
                    job_id,
                    should_cancel=_should_cancel(context, service.should_cancel(job_id)),
                    progress=lambda batch, result: context.log.info(
                        f"batch {batch}: {result.rows} profile(s)"
                    ),
                )
            except ExportCancelled:
                raise dg.Failure("Export job cancelled: nothing was published.") from None
            yield dg.MaterializeResult(
                asset_key=key,
                metadata={
                    "export_job_id": dg.MetadataValue.int(job_id),
                    "dataset_id": dg.MetadataValue.text(entry["dataset_id"]),
                    "exported_profiles": dg.MetadataValue.int(summary["rows"]),
                    "by_namespace": dg.MetadataValue.json(summary["by_namespace"]),
                    "batches": dg.MetadataValue.json(summary["batches"]),
                    "batch_folder": dg.MetadataValue.path(summary["files"][0] if summary["files"] else ""),
                    "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
                },
            )

    return export_audiences


def load_snapshot() -> list[dict[str, Any]]:
    return pinned_snapshot(SNAPSHOT_KEY, fetch_snapshot)


export_job = dg.define_asset_job(
    EXPORT_JOB,
    selection=dg.AssetSelection.groups(GROUP, SEGMENTS_GROUP, PROFILES_GROUP),
    description="Runs one export job: the destination's export asset, after the segments it evaluates first (runs "
    "select their keys via asset_selection).",
)
