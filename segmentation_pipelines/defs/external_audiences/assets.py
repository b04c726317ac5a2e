"""External audiences as Dagster assets: one spec per audience (``["external_audience", <id>]``), upstream of the
segment definitions that read it through ``inSegment`` (``defs/segments/assets.py`` adds the edge).

The specs come from a catalog snapshot pinned when the code location loads (like the segment assets). A run of
``external_audience_ingest`` materializes the audience's asset (after the stale profile-store assets): its op runs
both ingestion stages through :meth:`ExternalAudiencesService.execute` and records row, reject and member counts
as materialization metadata. Materialized from the UI (no run tags), it records a full ingestion run itself.
"""

import logging
from collections.abc import Iterator
from typing import Any

import dagster as dg

from segmentation_pipelines.catalog import Catalog
from segmentation_pipelines.defs.profiles.assets import GROUP as PROFILES_GROUP
from segmentation_pipelines.defs.profiles.assets import IDENTITY_GRAPH_KEY
from segmentation_pipelines.defs.snapshot import pinned_snapshot
from segmentation_pipelines.engine.external_ingest import IngestError
from segmentation_pipelines.launcher import TAG_KIND, TAG_REQUEST_ID
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.external_audience_ingestion import ExternalAudienceIngestion
from segmentation_pipelines.service.external_audience_runs import JOB_NAME, KIND
from segmentation_pipelines.service.external_audience_runs import asset_key as asset_key_parts
from segmentation_pipelines.service.external_audiences import snapshot
from segmentation_pipelines.settings import get_settings

log = logging.getLogger(__name__)

SNAPSHOT_KEY = "external_audience_snapshot"
GROUP = "external_audiences"
ASSET_NAME = "ingest_external_audiences"


def asset_key(audience_id: str) -> dg.AssetKey:
    return dg.AssetKey(asset_key_parts(audience_id))


def fetch_snapshot() -> list[dict[str, Any]]:
    settings = get_settings()
    try:
        settings.ensure_home()
        return snapshot(Catalog.for_url(settings.resolved_catalog_url))
    except Exception:
        log.exception("could not read the external audiences from the catalog; no external audience assets")
        return []


def load_snapshot() -> list[dict[str, Any]]:
    return pinned_snapshot(SNAPSHOT_KEY, fetch_snapshot)


def _spec(entry: dict[str, Any]) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=asset_key(entry["id"]),
        description=f"External audience '{entry['name']}' (audienceId {entry['audienceId']}), "
        f"ingested from {entry.get('path')}",
        deps=[IDENTITY_GRAPH_KEY],
        group_name=GROUP,
        kinds={"audience", "duckdb"},
        skippable=True,
        metadata={
            "external_audience_id": entry["id"],
            "audienceId": entry["audienceId"] or "",
            "org": entry["org_id"],
            "sandbox": entry["sandbox"],
            "source": entry.get("path") or "",
        },
        tags={"segmentation/sandbox": entry["sandbox"]},
    )


def _metadata(metrics: dict[str, Any], run_id: str) -> dict[str, Any]:
    return {
        "rows_read": dg.MetadataValue.int(int(metrics.get("rowsRead", 0))),
        "rows_accepted": dg.MetadataValue.int(int(metrics.get("rowsAccepted", 0))),
        "rows_rejected": dg.MetadataValue.int(int(metrics.get("rowsRejected", 0))),
        "rejects": dg.MetadataValue.json(dict(metrics.get("rejects") or {})),
        "rows_changed": dg.MetadataValue.int(int(metrics.get("rowsChanged", 0))),
        "members": dg.MetadataValue.int(int(metrics.get("members", 0))),
        "exited": dg.MetadataValue.int(int(metrics.get("exited", 0))),
        "pending_rows": dg.MetadataValue.int(int(metrics.get("pendingRows", 0))),
        "files": dg.MetadataValue.json(list(metrics.get("files") or [])),
        "external_audience_run_id": dg.MetadataValue.text(run_id),
    }


def build_ingest_assets(snapshot: list[dict[str, Any]]) -> dg.AssetsDefinition | None:
    if not snapshot:
        return None
    by_key = {asset_key(e["id"]): e for e in snapshot}

    @dg.multi_asset(specs=[_spec(e) for e in snapshot], can_subset=True, name=ASSET_NAME)
    def ingest_external_audiences(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        tags = context.run.tags
        requested = tags.get(TAG_REQUEST_ID) if tags.get(TAG_KIND) == KIND else None
        settings = get_settings()
        for key in sorted(context.selected_asset_keys, key=lambda k: k.to_user_string()):
            entry = by_key.get(key)
            if entry is None:
                continue
            ingestion = ExternalAudienceIngestion(
                ServiceContext.create(settings, entry["org_id"], entry["sandbox"])
            )
            runs = ingestion.runs
            run_id, own = requested, False
            if run_id is None:  # materialized from the UI: a full ingestion, recorded like any run
                run_id = runs.new_run(entry["id"], {"differentialIngestion": False}, trigger="ui", mode=True)[
                    "runId"
                ]
                runs.sync_with_run(run_id, "STARTED", context.run_id)
                own = True
            try:
                metrics = ingestion.execute(run_id, context.run_id, report=context.log.info)
            except IngestError as exc:
                if own:
                    runs.sync_with_run(run_id, "FAILURE", context.run_id, error=str(exc))
                raise dg.Failure(description=f"External audience '{entry['name']}': {exc}") from None
            if own:
                runs.sync_with_run(run_id, "SUCCESS", context.run_id)
            context.log.info(
                "External audience %s: %s rows read, %s rejected, %s members",
                entry["name"],
                metrics.get("rowsRead"),
                metrics.get("rowsRejected"),
                metrics.get("members"),
            )
            yield dg.MaterializeResult(asset_key=key, metadata=_metadata(metrics, run_id))

    return ingest_external_audiences


external_audience_ingest = dg.define_asset_job(
    JOB_NAME,
    selection=dg.AssetSelection.groups(GROUP, PROFILES_GROUP),
    description="Ingests an external audience's files (after the stale profile-store assets; runs select their "
    "keys via asset_selection).",
)
