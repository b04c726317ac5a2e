"""Dagster definitions of the exports domain: the export destinations (assets downstream of the segments they
read), ``export_job``, the publish-gate asset checks on segment assets, and the sensors driving export jobs."""

import dagster as dg

from segmentation_pipelines.defs.exports.assets import build_export_audiences, export_job, load_snapshot
from segmentation_pipelines.defs.exports.checks import build_gate_checks
from segmentation_pipelines.defs.exports.checks import load_snapshot as load_gates
from segmentation_pipelines.defs.exports.sensors import SENSORS
from segmentation_pipelines.defs.segments.assets import load_snapshot as load_segments


def defs() -> dg.Definitions:
    segments = load_segments()
    assets = build_export_audiences(load_snapshot(), segments)
    checks = build_gate_checks(load_gates(), segments)
    return dg.Definitions(
        assets=[assets] if assets is not None else [],
        asset_checks=[checks] if checks is not None else [],
        jobs=[export_job],
        sensors=SENSORS,
    )
