"""Sensors that drive segment jobs: launch ``NEW`` jobs, write run outcomes back, reconcile what was missed.

* ``segment_job_launcher`` (pull, architecture §5): every ``NEW`` job becomes a ``RunRequest`` of ``segment_job``
  with run key ``"<job id>:<attempt>"`` (Dagster launches one run per key, ever), and the job turns ``QUEUED``.
  A job naming definitions the loaded code location has no asset for yet waits (a reload is requested), and fails
  after ``NOT_LOADED_GRACE_S``: a run request with an unknown asset would fail the whole tick
  (``run_tracking.launcher_sensor``, the launcher of every kind).
* ``segment_job_started`` / ``_succeeded`` / ``_canceled`` / ``_failed``: run-status sensors writing the run's
  status onto its job (``sync_with_run`` is idempotent: a repeated or late event changes nothing).
* ``segment_job_reconciler``: the pass that repairs jobs whose run ended or vanished unnoticed (``reconcile.py``).

Runs are recognised by their tags (``segmentation/kind = segment_job``), whoever launched them (this sensor,
a schedule, the UI with the tags), so these sensors need no handle on the job definition.
"""

from __future__ import annotations

import dagster as dg

from segmentation_pipelines.defs.run_tracking import (
    LaunchMessages,
    launcher_sensor,
    reconciler_sensor,
    status_sensors,
)
from segmentation_pipelines.launcher import (
    KIND_SEGMENT_JOB,
    SEGMENT_JOB,
    TAG_JOB_ID,
)
from segmentation_pipelines.service.segment_jobs import SegmentJobsService

LAUNCH_BATCH = 50  # jobs launched per tick; the rest wait for the next tick (a tick must finish within 60 s)
# The daemon evaluates sensors at most every 5 s anyway (dagster/_daemon/sensor.py MIN_INTERVAL_LOOP_TIME).
LAUNCH_INTERVAL_S = 5
RECONCILE_INTERVAL_S = 30


def _not_loaded(service: SegmentJobsService, job_id: str, loaded: set[dg.AssetKey]) -> list[str]:
    """Definitions of the job that the loaded code location has no asset for (created after it loaded)."""
    return [i for i, key in service.definition_keys(job_id).items() if dg.AssetKey(key) not in loaded]


segment_job_launcher = launcher_sensor(
    "segment_job_launcher",
    job_name=SEGMENT_JOB,
    service=SegmentJobsService,
    description="Launches a run of segment_job for every NEW segment job (run key = job id and attempt).",
    interval_s=LAUNCH_INTERVAL_S,
    missing=_not_loaded,
    messages=LaunchMessages(
        idle="No NEW segment jobs.",
        waiting="{n} NEW job(s) wait for the code location to load their definitions.",
        not_loaded="Segment definition(s) {names} are not in the Dagster code location '{location}' after "
        "{grace_s} s: reload the code location.",
        launching="Launching %d segment job(s)",
    ),
    batch=LAUNCH_BATCH,
)


segment_job_started, segment_job_succeeded, segment_job_canceled, segment_job_failed = status_sensors(
    "segment_job",
    kind=KIND_SEGMENT_JOB,
    id_tag=TAG_JOB_ID,
    what="segment job",
    service=SegmentJobsService,
    interval_s=LAUNCH_INTERVAL_S,
)


segment_job_reconciler = reconciler_sensor(
    "segment_job_reconciler",
    SegmentJobsService,
    RECONCILE_INTERVAL_S,
    "Repairs segment jobs left QUEUED/PROCESSING/CANCELLING whose run ended or vanished.",
)


SENSORS = [
    segment_job_launcher,
    segment_job_started,
    segment_job_succeeded,
    segment_job_canceled,
    segment_job_failed,
    segment_job_reconciler,
]
