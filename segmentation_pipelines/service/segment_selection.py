"""What a segment job evaluates: its ``segments`` (``[{"segmentId": ...}]``, ``"*"`` = every batch definition of the
sandbox) resolved to each definition's expression and merge policy, and the evaluation days a job may ask for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.errors import BadRequest
from segmentation_pipelines.launcher import PARTITION_START, partition_evaluation_time
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.timeutil import from_ms, iso_ms, to_ms

DAY_MS = 86_400_000


def check_evaluation_day(evaluation_ms: int) -> None:
    """Evaluations are Dagster partitions by evaluation day (``launcher.evaluation_partition``): the time must fall
    in a day that exists, from the first one to today (UTC)."""
    first = to_ms(partition_evaluation_time(PARTITION_START)) - DAY_MS
    last = to_ms(partition_evaluation_time(from_ms(now_ms()).strftime("%Y-%m-%d")))
    if evaluation_ms <= first:
        raise BadRequest(
            f"evaluation_time: must be after {PARTITION_START}T00:00:00Z (the first evaluation day)."
        )
    if evaluation_ms > last:
        raise BadRequest(f"evaluation_time: must not be later than {iso_ms(last)} (the end of today, UTC).")


def batch_evaluated(row: models.SegmentDefinition) -> bool:
    """Definitions a ``"*"`` job evaluates: batch ones whose audience is not inactive or deleted."""
    body = row.body or {}
    method = (body.get("evaluationInfo") or {}).get("batch") or {}
    if method.get("enabled") is False:
        return False
    return str(body.get("lifecycleState") or "").lower() not in ("inactive", "archived", "deleted")


def resolve_segments(ctx: ServiceContext, body: Any) -> list[dict]:
    """The job's ``segments``: each requested definition with its expression and merge policy."""
    items = body.get("segments") if isinstance(body, Mapping) else body
    where = "segments" if isinstance(body, Mapping) else "body"
    if not isinstance(items, list) or not items:
        raise BadRequest(f'{where}: expected a non-empty JSON array of {{"segmentId": "<definition id>"}}.')
    wanted: list[str] = []
    for i, item in enumerate(items):
        ident = item.get("segmentId") if isinstance(item, Mapping) else None
        if not isinstance(ident, str) or not ident.strip():
            raise BadRequest(f'{where}[{i}].segmentId: expected a segment definition id (or "*").')
        if ident not in wanted:
            wanted.append(ident.strip())
    m = models.SegmentDefinition
    with ctx.catalog.session(readonly=True) as session:
        repo = ctx.repo(session, m)
        if "*" in wanted:
            rows = [
                r
                for r in repo.find(m.batch_enabled.is_(True), order_by=[m.created_ms, m.id])
                if batch_evaluated(r)
            ]
            if not rows:
                raise BadRequest(
                    f'{where}: "*" selects every batch segment definition, and this sandbox has none.'
                )
        else:
            rows = []
            for i, ident in enumerate(wanted):
                row = repo.get(ident)
                if row is None:
                    raise BadRequest(
                        f"{where}[{i}].segmentId: segment definition '{ident}' was not found in this sandbox."
                    )
                rows.append(row)
        return [_segment_info(r) for r in rows]


def _segment_info(row: models.SegmentDefinition) -> dict:
    body = row.body or {}
    policy_id = body.get("mergePolicyId")
    segment: dict[str, Any] = {
        "id": row.id,
        "version": int(body.get("version") or 1),
        "expression": body.get("expression"),
        "mergePolicyId": policy_id,
        "mergePolicy": {"id": policy_id, "version": 1},
    }
    return {"segmentId": row.id, "segment": segment}
