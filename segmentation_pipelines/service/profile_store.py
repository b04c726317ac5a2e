"""The profile store of a sandbox as the service layer sees it: is it current, which version is published, and
bringing it current.

The store (identity graph, keyed events, merged profiles per merge policy) is built from the sandbox's successful
batches by the Dagster assets of ``defs/profiles``; ``profiles/store.py`` does the work and writes a manifest per
version, from which :meth:`ProfileStoreService.stale` tells what a new batch, a deleted batch or a changed merge
policy left behind. :meth:`ProfileStoreService.refresh` materializes what is stale, and what it feeds, in this
process through Dagster (so every refresh is a run in the Dagster UI with the assets' metadata). Ingestion calls it
before it returns, segment jobs put the same assets at the head of their run, and under ``dev``/``serve`` a sensor
(or the API's runner) refreshes what anything else made stale.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from typing import Any

from sqlalchemy import select

from segmentation_pipelines.catalog import models
from segmentation_pipelines.errors import ApiError
from segmentation_pipelines.launcher import (
    EVENTS_ASSET,
    IDENTITY_GRAPH_ASSET,
    KIND_PROFILE_STORE,
    PROFILE_STORE_JOB,
    RunRequest,
    merged_profiles_asset_key,
    store_part_asset_key,
)
from segmentation_pipelines.profiles import store
from segmentation_pipelines.profiles.layout import StoreLayout
from segmentation_pipelines.service.batches import successful_batches
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.merge_policies import MergePoliciesService

log = logging.getLogger(__name__)

CURRENT, STALE = "current", "stale"


def sandboxes_with_data(catalog) -> list[tuple[str, str]]:
    """``(org, sandbox)`` of every sandbox that has a dataset (for the sensor and the API's runner)."""
    m = models.Dataset
    with catalog.session(readonly=True) as session:
        rows = session.execute(select(m.org_id, m.sandbox).distinct().order_by(m.org_id, m.sandbox))
        return [tuple(r) for r in rows]


class ProfileStoreService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.layout = StoreLayout(ctx.sandbox_root)

    def _policies(self) -> list[dict[str, Any]]:
        return MergePoliciesService(self.ctx).list(limit="1000")["children"]

    def _has_data(self) -> bool:
        with self.ctx.catalog.session(readonly=True) as session:
            return bool(self.ctx.repo(session, models.Dataset).find(limit=1))

    def stale(self) -> list[str]:
        """The store parts (``identity_graph``, ``events``, ``merged/<policyId>``) not current for the sandbox's
        successful batches and merge policies."""
        batches = successful_batches(self.ctx)
        return store.stale_parts(
            self.layout, batches["profile"], batches["experienceevent"], self._policies()
        )

    def refresh_selection(self) -> list[list[str]]:
        """Asset keys (parts) a run materializes to make the store current: the stale parts and everything
        downstream of them (a new identity link can change the events and merged profiles of other batches;
        parts with nothing to do return at once)."""
        stale = self.stale()
        if not stale or not self._has_data():
            return []  # a sandbox without any dataset has no store to build
        keys = [store_part_asset_key(p) for p in stale]
        if "identity_graph" in stale:
            keys += [EVENTS_ASSET, *(merged_profiles_asset_key(p["id"]) for p in self._policies())]
        ordered = [IDENTITY_GRAPH_ASSET, EVENTS_ASSET]
        unique = {tuple(k): list(k) for k in sorted(keys, key=lambda k: (k not in ordered, k))}
        return list(unique.values())

    def target_key(self) -> str:
        """A digest of what the store must be built from (batches and merge policies): the run key of a refresh,
        so that a sensor asks once per state of the inputs."""
        batches = successful_batches(self.ctx)
        inputs = {
            "batches": sorted(b.batch_id for refs in batches.values() for b in refs),
            "policies": sorted(
                (p["id"], json.dumps(p.get("attributeMerge"), sort_keys=True)) for p in self._policies()
            ),
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]

    def refresh_request(self, reason: str, request_id: str | None = None) -> RunRequest | None:
        """The run that makes the store current (None when it is)."""
        selection = self.refresh_selection()
        if not selection:
            return None
        return RunRequest(
            kind=KIND_PROFILE_STORE,
            request_id=request_id or f"store-{uuid.uuid4().hex[:12]}",
            attempt=1,
            job_name=PROFILE_STORE_JOB,
            asset_selection=tuple(tuple(k) for k in selection),
            org=self.ctx.org_id,
            sandbox=self.ctx.sandbox,
            tags={"segmentation/reason": reason},
        )

    def version(self) -> dict[str, Any]:
        """The published store: ``{identityGraph, events, mergedProfiles: {policyId: version}}``."""
        return store.store_version(self.layout, [p["id"] for p in self._policies()])

    def status(self) -> dict[str, Any]:
        stale = self.stale()
        return {"status": STALE if stale else CURRENT, "stale": stale, "version": self.version()}

    def refresh(self, reason: str = "refresh") -> dict[str, Any]:
        """Materialize the stale parts in this process through Dagster; the store's status afterwards."""
        request = self.refresh_request(reason)
        if request is None:
            return self.status()
        launcher = self.ctx.launcher
        run_id = launcher.new_run_id()
        status, errors = launcher.execute(request, run_id)
        if status != "SUCCESS":
            detail = "; ".join(e.get("msg", "") for e in errors or []) or f"the run ended {status}"
            raise ApiError(500, f"Refreshing the profile store failed (Dagster run {run_id}): {detail}")
        out = self.status()
        out["runId"] = run_id
        return out
