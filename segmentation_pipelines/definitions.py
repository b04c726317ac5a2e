"""The Dagster entry point (``workspace.yaml`` points here): the definitions of each domain in ``defs/``, merged."""

from __future__ import annotations

import dagster as dg

from segmentation_pipelines.defs import exports, external_audiences, jobs, profiles, schedules, segments


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        profiles.defs(),
        segments.defs(),
        jobs.defs(),
        schedules.defs(),
        exports.defs(),
        external_audiences.defs(),
    )
