"""Dagster definitions of the external_audiences domain: one asset per external audience, the
``external_audience_ingest`` job, and the sensors that launch, track and maintain ingestion runs.

See :mod:`segmentation_pipelines.defs.external_audiences.assets` and ``.sensors``.
"""

import dagster as dg

from segmentation_pipelines.defs.external_audiences.assets import (
    asset_key,
    build_ingest_assets,
    external_audience_ingest,
    load_snapshot,
)
from segmentation_pipelines.defs.external_audiences.sensors import SENSORS

__all__ = ["asset_key", "defs"]


def defs() -> dg.Definitions:
    assets = build_ingest_assets(load_snapshot())
    return dg.Definitions(
        assets=[assets] if assets is not None else [], jobs=[external_audience_ingest], sensors=SENSORS
    )
