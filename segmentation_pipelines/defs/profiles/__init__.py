"""Dagster definitions of the profiles domain: dataset source assets, identity graph, keyed events, merged
profiles per merge policy (see :mod:`segmentation_pipelines.defs.profiles.assets`)."""

import dagster as dg

from segmentation_pipelines.defs.profiles.assets import (
    EVENTS_KEY,
    IDENTITY_GRAPH_KEY,
    ProfileStoreResource,
    catalog_snapshot,
    dataset_key,
    merged_profiles_key,
    profile_definitions,
)
from segmentation_pipelines.defs.profiles.sensors import profile_store_refresher
from segmentation_pipelines.defs.snapshot import pinned_snapshot
from segmentation_pipelines.settings import get_settings

__all__ = ["EVENTS_KEY", "IDENTITY_GRAPH_KEY", "dataset_key", "defs", "merged_profiles_key"]


def defs() -> dg.Definitions:

    settings = get_settings()
    snapshot = pinned_snapshot("profiles_catalog", lambda: catalog_snapshot(settings))
    return dg.Definitions.merge(
        profile_definitions(snapshot, ProfileStoreResource()),
        dg.Definitions(sensors=[profile_store_refresher]),
    )
