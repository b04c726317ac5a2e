"""Dagster definitions of the segments domain: the ``evaluate_segments`` multi_asset and ``segment_job``.

See :mod:`segmentation_pipelines.defs.segments.assets`.
"""

import dagster as dg

from segmentation_pipelines.defs.segments.assets import (
    JOB_NAME,
    asset_key,
    build_evaluate_segments,
    load_snapshot,
    segment_job,
)

__all__ = ["JOB_NAME", "asset_key", "defs", "segment_job"]


def defs() -> dg.Definitions:
    assets = build_evaluate_segments(load_snapshot())
    return dg.Definitions(assets=[assets] if assets is not None else [], jobs=[segment_job])
