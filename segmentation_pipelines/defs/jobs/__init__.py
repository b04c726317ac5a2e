"""Dagster definitions of the jobs domain: the sensors that launch segment jobs and track their runs.

The ``segment_job`` asset job they launch lives with the segment assets (``defs/segments``).
"""

import dagster as dg

from segmentation_pipelines.defs.jobs.sensors import SENSORS


def defs() -> dg.Definitions:
    return dg.Definitions(sensors=SENSORS)
