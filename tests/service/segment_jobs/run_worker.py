"""A run worker in its own process (the kill tests kill it): runs one segment job in-process with the probe.

``python -m tests.service.segment_jobs.run_worker <home> <job id> <definition id> <work seconds>``
"""

from __future__ import annotations

import sys

from segmentation_pipelines.dagster_launcher import DagsterLauncher
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.segment_jobs import SegmentJobsService
from segmentation_pipelines.settings import get_settings

from .probe_segments import probe_definitions

if __name__ == "__main__":
    home, job_id, definition_id, work_s = sys.argv[1:5]
    ctx = ServiceContext.create(get_settings(home=home), None, "prod")
    ctx.launcher = DagsterLauncher(
        ctx.settings, definitions=probe_definitions(home, [definition_id], work_s=float(work_s))
    )
    SegmentJobsService(ctx).run_in_process(job_id)
