"""Publish gates as blocking Dagster asset checks on the segment assets (``service/export_gates.py``).

One check per configured gate (``publish_gate_size_change``, ``publish_gate_exit_share``,
``publish_gate_min_members``), run after every evaluation of the segment (segment jobs, schedules, an export that
evaluates first). In an export run a failure is an ERROR, so it blocks what is downstream in the same run: the export
step does not run and the export job fails naming the check; in a segment job's run it is a WARN (the evaluation is
published anyway; the gate is read again by every export of the segment). An export run that overrides the gate (tag
``segmentation/gate_override``) records the failure as a WARN, which does not block.
"""

from typing import Any

import dagster as dg

from segmentation_pipelines.catalog import Catalog
from segmentation_pipelines.defs.segments.assets import entry_key
from segmentation_pipelines.defs.snapshot import pinned_snapshot
from segmentation_pipelines.launcher import KIND_EXPORT_JOB, TAG_GATE_OVERRIDE, TAG_KIND
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.export_gates import CHECKS, PublishGates, gates_snapshot
from segmentation_pipelines.settings import get_settings

SNAPSHOT_KEY = "publish_gates_snapshot"


def fetch_snapshot() -> list[dict[str, Any]]:

    settings = get_settings()
    settings.ensure_home()
    return gates_snapshot(Catalog.for_url(settings.resolved_catalog_url))


def build_gate_checks(gates: list[dict[str, Any]], segment_snapshot: list[dict[str, Any]]):
    known = {(e["org_id"], e["sandbox"], e["id"]): entry_key(e) for e in segment_snapshot}
    entries = [g for g in gates if (g["org_id"], g["sandbox"], g["id"]) in known and g["gates"]]
    if not entries:
        return None
    specs, by_check = [], {}
    for entry in entries:
        key = known[(entry["org_id"], entry["sandbox"], entry["id"])]
        for gate, limit in entry["gates"].items():
            spec = dg.AssetCheckSpec(
                CHECKS[gate], asset=key, blocking=True, description=f"Publish gate {gate} = {limit}"
            )
            specs.append(spec)
            by_check[spec.key] = (entry, gate)

    @dg.multi_asset_check(specs=specs, can_subset=True, name="publish_gates")
    def publish_gates(context: dg.AssetCheckExecutionContext):

        # Blocking only where something downstream would publish: in an export run. A segment job's evaluation is
        # published whatever its gates say (they gate exports), so there a failed gate is a WARN.
        exporting = context.run.tags.get(TAG_KIND) == KIND_EXPORT_JOB
        override = context.run.tags.get(TAG_GATE_OVERRIDE, "")
        overridden = {c.strip() for c in override.split(",") if c.strip()}
        for check_key in context.selected_asset_check_keys:
            entry, gate = by_check[check_key]
            ctx = ServiceContext.create(get_settings(), entry["org_id"], entry["sandbox"])
            (result,) = PublishGates(ctx).status(entry["id"], {gate: entry["gates"][gate]})
            waived = not result.passed and ("*" in overridden or result.check in overridden)
            yield dg.AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=check_key.name,
                passed=result.passed,
                severity=dg.AssetCheckSeverity.ERROR
                if exporting and not waived
                else dg.AssetCheckSeverity.WARN,
                description=result.description + (" Overridden by the export job." if waived else ""),
                metadata={k: v for k, v in result.metadata.items() if v is not None},
            )

    return publish_gates


def load_snapshot() -> list[dict[str, Any]]:
    return pinned_snapshot(SNAPSHOT_KEY, fetch_snapshot)
