"""The profile store as Dagster assets.

* ``datasets/<datasetId>``: observable source assets; their data version is the newest successful batch;
* ``profiles/identity_graph``: identity stitching over every batch of every sandbox;
* ``profiles/experience_events``: events keyed to merged profile ids (what segment evaluation scans);
* ``profiles/merged_profiles/<mergePolicyId>``: one per merge policy, in one subsettable multi-asset.

Which datasets and policies exist is read from the catalog when the code location loads (a small snapshot, pinned
for run workers); the work itself happens in ``profiles/`` when an asset materializes.
"""

import time
import warnings
from typing import Any

import dagster as dg

from segmentation_pipelines.catalog import Catalog, models
from segmentation_pipelines.launcher import (
    EVENTS_ASSET,
    IDENTITY_GRAPH_ASSET,
    PROFILE_STORE_JOB,
    TAG_ORG,
    TAG_SANDBOX,
    dataset_asset_key,
    merged_profiles_asset_key,
)
from segmentation_pipelines.profiles.layout import StoreLayout
from segmentation_pipelines.profiles.store import (
    build_events_store,
    build_identity_graph_store,
    build_merged_profiles,
)
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.datasets import DatasetsService
from segmentation_pipelines.service.merge_policies import MergePoliciesService
from segmentation_pipelines.settings import Settings, get_settings

GROUP = "profiles"
IDENTITY_GRAPH_KEY = dg.AssetKey(IDENTITY_GRAPH_ASSET)
EVENTS_KEY = dg.AssetKey(EVENTS_ASSET)


def merged_profiles_key(merge_policy_id: str) -> dg.AssetKey:
    return dg.AssetKey(merged_profiles_asset_key(merge_policy_id))


def dataset_key(dataset_id: str) -> dg.AssetKey:
    return dg.AssetKey(dataset_asset_key(dataset_id))


def _run_scopes(context: dg.AssetExecutionContext, scopes: list[dict]) -> list[dict]:
    """The scopes a run refreshes: the (org, sandbox) of its tags (a refresh or a segment job), else all."""
    tags = context.run.tags
    org, sandbox = tags.get(TAG_ORG), tags.get(TAG_SANDBOX)
    if not (org and sandbox):
        return scopes
    return [s for s in scopes if (s["org"], s["sandbox"]) == (org, sandbox)]


class ProfileStoreResource(dg.ConfigurableResource):
    """Where the store lives: the settings' home folder and catalog (empty = from the environment)."""

    home: str = ""
    catalog_url: str = ""

    def settings(self) -> Settings:
        return get_settings(home=self.home or None, catalog_url=self.catalog_url or None)


def catalog_snapshot(settings: Settings) -> dict:
    """Datasets and merge policies of every (org, sandbox) that has any: what the asset graph is made of."""

    settings.ensure_home()
    catalog = Catalog.for_url(settings.resolved_catalog_url)
    scopes: dict[tuple[str, str], dict] = {}
    with catalog.session() as s:
        for d in s.query(models.Dataset).order_by(models.Dataset.created_ms):
            scope = scopes.setdefault(
                (d.org_id, d.sandbox), {"org": d.org_id, "sandbox": d.sandbox, "datasets": [], "policies": []}
            )
            scope["datasets"].append({"id": d.id, "name": d.name, "xdmClass": d.xdm_class})
        # A sandbox with merge policies but no data yet still gets (empty) merged profiles, so that segment
        # definitions written there have the asset they depend on.
        for p in s.query(models.MergePolicy).order_by(models.MergePolicy.created_ms):
            scope = scopes.setdefault(
                (p.org_id, p.sandbox), {"org": p.org_id, "sandbox": p.sandbox, "datasets": [], "policies": []}
            )
            scope["policies"].append({"id": p.id, "name": p.name, "default": p.is_default})
    return {"scopes": list(scopes.values())}


def _context(settings: Settings, scope: dict):

    return ServiceContext.create(settings, org_id=scope["org"], sandbox=scope["sandbox"])


def _dataset_source(scope: dict, dataset: dict) -> dg.SourceAsset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _observable_dataset(scope, dataset)


def _observable_dataset(scope: dict, dataset: dict) -> dg.SourceAsset:
    @dg.observable_source_asset(
        key=dataset_key(dataset["id"]),
        group_name="datasets",
        description=f"Dataset '{dataset['name']}' ({dataset['xdmClass']}) in sandbox {scope['sandbox']}",
        metadata={"dataset_id": dataset["id"], "sandbox": scope["sandbox"], "xdm_class": dataset["xdmClass"]},
    )
    def observe(profile_store: ProfileStoreResource) -> dg.ObserveResult:

        batches = DatasetsService(_context(profile_store.settings(), scope)).batches(dataset["id"])
        done = [b for b in batches.values() if b.get("status") == "success"]
        last = done[-1]["id"] if done else "none"
        return dg.ObserveResult(
            data_version=dg.DataVersion(last),
            metadata={
                "batches": len(done),
                "rows": sum(int(b.get("rowCount") or 0) for b in done),
                "rejected_rows": sum(int(b.get("rejectedRowCount") or 0) for b in done),
                "last_batch": last,
            },
        )

    return observe


def build_assets(snapshot: dict) -> list:
    scopes = snapshot.get("scopes") or []
    sources = [_dataset_source(scope, d) for scope in scopes for d in scope["datasets"]]
    source_keys = [dataset_key(d["id"]) for scope in scopes for d in scope["datasets"]]

    @dg.asset(
        key=IDENTITY_GRAPH_KEY,
        deps=source_keys,
        group_name=GROUP,
        pool="profile_store",
        description="Identity graph: connected components of identities shared by profile fragments and events",
    )
    def identity_graph(
        context: dg.AssetExecutionContext, profile_store: ProfileStoreResource
    ) -> dg.MaterializeResult:

        started = time.perf_counter()
        settings = profile_store.settings()
        totals: dict[str, Any] = {
            "identities": 0,
            "profiles": 0,
            "fragments": 0,
            "events": 0,
            "excluded_components": 0,
            "excluded_identities": 0,
            "largest_component": 0,
        }
        modes = []
        for scope in _run_scopes(context, scopes):
            ctx = _context(settings, scope)
            batches = DatasetsService(ctx).successful_batches()
            stats = build_identity_graph_store(
                StoreLayout(ctx.sandbox_root), batches["profile"], batches["experienceevent"]
            )
            context.log.info(f"{scope['org']}/{scope['sandbox']}: {stats}")
            modes.append(f"{scope['sandbox']}: {stats.get('mode', 'full')}")
            for k in ("identities", "profiles", "excluded_components", "excluded_identities"):
                totals[k] += stats[k]
            totals["largest_component"] = max(totals["largest_component"], stats["largest_component"])
            totals["fragments"] += sum(b.rows for b in batches["profile"])
            totals["events"] += sum(b.rows for b in batches["experienceevent"])
        totals["sandboxes"] = len(modes)
        totals["mode"] = ", ".join(modes)
        totals["duration_s"] = round(time.perf_counter() - started, 3)
        return dg.MaterializeResult(metadata=totals)

    @dg.asset(
        key=EVENTS_KEY,
        deps=[IDENTITY_GRAPH_KEY],
        group_name=GROUP,
        pool="profile_store",
        description="Experience events keyed to merged profile ids (no identity join needed at evaluation)",
    )
    def experience_events(context: dg.AssetExecutionContext, profile_store: ProfileStoreResource):

        started = time.perf_counter()
        settings = profile_store.settings()
        totals: dict[str, Any] = {"events": 0, "events_excluded": 0}
        modes = []
        for scope in _run_scopes(context, scopes):
            ctx = _context(settings, scope)
            batches = DatasetsService(ctx).successful_batches()
            stats = build_events_store(StoreLayout(ctx.sandbox_root), batches["experienceevent"])
            totals["events"] += stats["events"]
            totals["events_excluded"] += stats["events_excluded"]
            modes.append(f"{scope['sandbox']}: {stats.get('mode', 'full')}")
        totals["mode"] = ", ".join(modes)
        totals["duration_s"] = round(time.perf_counter() - started, 3)
        return dg.MaterializeResult(metadata=totals)

    policies = {merged_profiles_key(p["id"]): (scope, p) for scope in scopes for p in scope["policies"]}
    assets = [*sources, identity_graph, experience_events]
    if policies:
        specs = [
            dg.AssetSpec(
                key=key,
                deps=[IDENTITY_GRAPH_KEY],
                group_name=GROUP,
                skippable=True,
                description=f"Merged profiles of sandbox {scope['sandbox']} under merge policy '{p['name']}'"
                + (" (default)" if p.get("default") else ""),
                metadata={"merge_policy_id": p["id"], "sandbox": scope["sandbox"]},
            )
            for key, (scope, p) in policies.items()
        ]

        @dg.multi_asset(specs=specs, can_subset=True, name="merged_profiles", pool="profile_store")
        def merged_profiles(context: dg.AssetExecutionContext, profile_store: ProfileStoreResource):

            settings = profile_store.settings()
            for key in sorted(context.selected_asset_keys, key=lambda k: k.to_user_string()):
                scope, p = policies[key]
                ctx = _context(settings, scope)
                policy = MergePoliciesService(ctx).get(p["id"])
                batches = DatasetsService(ctx).successful_batches()
                stats = build_merged_profiles(StoreLayout(ctx.sandbox_root), batches["profile"], policy)
                yield dg.MaterializeResult(
                    asset_key=key,
                    metadata={
                        "profiles": stats["profiles"],
                        "fragments": stats["fragments"],
                        "merge_policy_id": p["id"],
                        "attribute_merge": policy["attributeMerge"]["type"],
                        "mode": stats.get("mode", "full"),
                        "version": str(stats.get("version", "")),
                        "duration_s": stats["seconds"],
                        "path": dg.MetadataValue.path(
                            str(StoreLayout(ctx.sandbox_root).profiles_dir(p["id"]))
                        ),
                    },
                )

        assets.append(merged_profiles)
    return assets


profile_store_job = dg.define_asset_job(
    PROFILE_STORE_JOB,
    selection=dg.AssetSelection.groups(GROUP),
    description="Brings the profile store current (runs select the stale assets via asset_selection).",
)


def profile_definitions(snapshot: dict, resource: ProfileStoreResource | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=build_assets(snapshot),
        jobs=[profile_store_job],
        resources={"profile_store": resource or ProfileStoreResource()},
    )
