"""A small real stand-in for the segments code location, for the job-plumbing tests of this folder.

It has the contract's shape (one ``evaluate_segments`` multi_asset with a ``["segment", <name>__<id8>]`` key per definition,
group ``segments``, subsettable; the ``segment_job`` asset job), works for ``work_s`` seconds while polling the
job's ``should_cancel``, writes one file per evaluated definition (``<home>/probe/<job id>/<definition id>``) and
records a summary whose counts are fixed per definition (``PROBE_COUNTS``), so the tests can check the plumbing
(launch, status, cancel, kill, metrics) independently of the engine. The end-to-end tests use the real one.
"""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg

from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.defs.segments.partitions import EVALUATION_DAYS
from segmentation_pipelines.launcher import TAG_JOB_ID, TAG_ORG, TAG_SANDBOX
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.segment_definitions import catalog_snapshot
from segmentation_pipelines.service.segment_jobs import SegmentJobsService
from segmentation_pipelines.settings import get_settings

PROBE_COUNTS = {
    "members": 3,
    "realized": 2,
    "existing": 1,
    "exited": 4,
    "by_namespace": {"email": 3, "crmId": 2},
}


class ProbeCancelled(Exception):
    pass


def probe_definitions(
    home: str, definition_ids: list[str], work_s: float = 0.0, fail: bool = False
) -> dg.Definitions:
    settings = get_settings(home=home)
    keys = {e["id"]: e["assetKey"] for e in catalog_snapshot(ServiceContext.create(settings).catalog)}
    by_key = {dg.AssetKey(keys[i]): i for i in definition_ids}
    specs = [dg.AssetSpec(key, group_name="segments", partitions_def=EVALUATION_DAYS) for key in by_key]

    @dg.multi_asset(specs=specs, can_subset=True, name="evaluate_segments")
    def evaluate_segments(context):
        tags = context.run.tags
        ctx = ServiceContext.create(get_settings(home=home), tags[TAG_ORG], tags[TAG_SANDBOX])
        jobs = SegmentJobsService(ctx)
        job_id = tags.get(TAG_JOB_ID)
        should_cancel = jobs.should_cancel(job_id, context.run_id, min_interval_s=0.1)
        started = now_ms()
        deadline = time.monotonic() + work_s
        while time.monotonic() < deadline:
            if should_cancel():
                raise ProbeCancelled(f"segment job {job_id} was cancelled")
            time.sleep(0.05)
        if fail:
            raise ValueError("probe evaluation failed on purpose")
        ids = [by_key[key] for key in context.selected_asset_keys]
        out = Path(home) / "probe" / str(job_id)
        out.mkdir(parents=True, exist_ok=True)
        for ident in ids:
            (out / ident).write_text(tags.get("segmentation/evaluation_time", ""))
        if job_id:
            summary = {
                "audiences": {i: PROBE_COUNTS for i in ids},
                "total_profiles": 10,
                "total_profiles_by_merge_policy": {"mp-1": 10},
                "segmentation_start_ms": started,
                "segmentation_end_ms": now_ms(),
            }
            jobs.record_evaluation(job_id, summary)
        for key in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=key)

    segment_job = dg.define_asset_job("segment_job", selection=dg.AssetSelection.groups("segments"))
    return dg.Definitions(assets=[evaluate_segments], jobs=[segment_job])
