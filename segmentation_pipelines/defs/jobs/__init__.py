"""Dagster definitions of the jobs domain: the sensors that launch segment jobs and track their runs.

The ``segment_job`` asset job itself lives with the segment assets (``defs/segments``).
"""

import dagster as dg

from segmentation_pipelines.defs.jobs.sensors import SENSORS, segment_job_launcher


def _segment_job_defined() -> bool:
    # TODO(segment jobs): drop this guard once defs/segments defines segment_job (the launcher targets it by name).
    from segmentation_pipelines.defs import segments

    return any(getattr(job, "name", None) == "segment_job" for job in segments.defs().jobs or [])


def defs() -> dg.Definitions:
    sensors = SENSORS if _segment_job_defined() else [s for s in SENSORS if s is not segment_job_launcher]
    return dg.Definitions(sensors=sensors)
