"""A segment job's ``metrics`` and ``errors`` from the summary of its evaluation (``run_evaluation``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _field(obj: Any, name: str, default: Any = None) -> Any:
    """``obj.name`` or ``obj[name]``: the evaluation summary may be a dataclass or a dict."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def evaluation_metrics(summary: Any) -> dict[str, Any]:
    """The ``metrics`` an evaluation fills: per-audience counts, profiles, the segmentation phase's times."""
    audiences = _field(summary, "audiences") or {}
    counter, by_namespace, by_status = {}, {}, {}
    for audience_id, counts in dict(audiences).items():
        realized = int(_field(counts, "realized", 0) or 0)
        existing = int(_field(counts, "existing", 0) or 0)
        exited = int(_field(counts, "exited", 0) or 0)
        members = _field(counts, "members")
        counter[audience_id] = int(realized + existing if members is None else members)
        by_namespace[audience_id] = {
            str(k): int(v) for k, v in dict(_field(counts, "by_namespace") or {}).items()
        }
        by_status[audience_id] = {"realized": realized, "existing": existing, "exited": exited}
    start = _field(summary, "segmentation_start_ms")
    end = _field(summary, "segmentation_end_ms")
    phase = {}
    if start is not None and end is not None:
        phase = {"startTimeInMs": int(start), "endTimeInMs": int(end), "totalTimeInMs": int(end) - int(start)}
    by_policy = {
        str(k): int(v) for k, v in dict(_field(summary, "total_profiles_by_merge_policy") or {}).items()
    }
    total = _field(summary, "total_profiles")
    metrics: dict[str, Any] = {
        "profileSegmentationTime": phase,
        "totalProfiles": int(total if total is not None else sum(by_policy.values())),
        "totalProfilesByMergePolicy": by_policy,
        "segmentedProfileCounter": counter,
        "segmentedProfileByNamespaceCounter": by_namespace,
        "segmentedProfileByStatusCounter": by_status,
    }
    phases = _field(summary, "phases_ms")
    if phases:  # extension: where the job's time went (docs/decisions/segment-jobs.md)
        metrics["phasesInMs"] = {str(k): int(v) for k, v in dict(phases).items()}
    if _field(summary, "failed"):
        metrics["failedSegmentCounter"] = len(dict(_field(summary, "failed")))
    return metrics


def evaluation_errors(summary: Any) -> list[dict[str, Any]]:
    """Each definition the evaluation left out (the job still succeeds for the others) as an error of the job."""
    failed = dict(_field(summary, "failed") or {})
    return [
        {"code": str(f.get("code")), "msg": str(f.get("message")), "segmentId": ident}
        for ident, f in sorted(failed.items())
    ]


def evaluated_store(summary: Any) -> str | None:
    """The profile-store version the evaluation read."""
    return _field(summary, "store_version") or None


def with_dagster_phase(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` of an ended job with the Dagster phases, when the evaluation recorded phases:
    ``dagsterLaunch`` (from the job's creation to the evaluation's start, less ``storeRefresh``: waiting to be
    launched, the definitions loaded, the run and its step started) and ``dagsterFinish`` (the rest of
    ``totalTime``: the materializations and their metadata, the run's end, the status written back)."""
    phases = metrics.get("phasesInMs")
    total = metrics.get("totalTime") or {}
    segmentation = metrics.get("profileSegmentationTime") or {}
    if not phases or total.get("totalTimeInMs") is None:
        return metrics
    known = {k: int(v) for k, v in phases.items() if k not in ("dagsterLaunch", "dagsterFinish")}
    launch = 0
    if segmentation.get("startTimeInMs") is not None and total.get("startTimeInMs") is not None:
        launch = (
            int(segmentation["startTimeInMs"]) - int(total["startTimeInMs"]) - known.get("storeRefresh", 0)
        )
    launch = max(launch, 0)
    finish = max(int(total["totalTimeInMs"]) - sum(known.values()) - launch, 0)
    return {**metrics, "phasesInMs": {**known, "dagsterLaunch": launch, "dagsterFinish": finish}}
