"""Segment definitions as Dagster assets: one ``multi_asset`` (``evaluate_segments``), one spec per definition.

The specs come from the catalog snapshot pinned when the code location loads (``defs/snapshot.py``;
dagster-notes §1.2), so a run worker rebuilds exactly the assets its run was launched with. Each spec: key
``["segment", "<name>__<id8>"]`` given at creation and kept across renames (``launcher.definition_asset_key``), partitioned by evaluation day
(``partitions.py``), group ``segments``, description = the definition's name and PQL, deps on the
merged profiles asset of its merge policy, the experience events and the segments it references through ``inSegment``. ``can_subset=True``: any subset can
be materialized, and the op evaluates the selected definitions in dependency order, in one evaluation (one engine
pass per merge policy), through :func:`segmentation_pipelines.service.segment_evaluation.run_evaluation`.

Run tags (contract with segment jobs and schedules): ``segmentation/job_id``, ``segmentation/evaluation_time``,
``segmentation/org``, ``segmentation/sandbox``, and the evaluation day as Dagster's partition. Without them (a
materialization or backfill of evaluation days from the UI) each day is evaluated as of its end (now for today),
in each definition's own sandbox, with no job.
"""

import datetime as dt
import logging
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import dagster as dg

from segmentation_pipelines.catalog import Catalog
from segmentation_pipelines.dagster_launcher import worker_tag
from segmentation_pipelines.dagster_sqlite import event_index_held
from segmentation_pipelines.defs.external_audiences.assets import load_snapshot as load_external_snapshot
from segmentation_pipelines.defs.profiles.assets import EVENTS_KEY, merged_profiles_key
from segmentation_pipelines.defs.profiles.assets import GROUP as PROFILES_GROUP
from segmentation_pipelines.defs.segments.partitions import EVALUATION_DAYS
from segmentation_pipelines.defs.snapshot import pinned_snapshot
from segmentation_pipelines.launcher import (  # the run contract, defined once
    KIND_SEGMENT_JOB,
    SEGMENT_JOB,
    TAG_EVALUATION_TIME,
    TAG_JOB_ID,
    TAG_KIND,
    TAG_ORG,
    TAG_SANDBOX,
    TAG_STEP_WORKER,
    TAG_WORKER,
    is_segment_key_of,
    partition_evaluation_time,
    segment_asset_key,
)
from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.external_audience_runs import asset_key as external_audience_asset_key
from segmentation_pipelines.service.segment_definitions import catalog_snapshot
from segmentation_pipelines.service.segment_evaluation import (
    EvaluationSummary,
    run_evaluation,
    topological_order,
)
from segmentation_pipelines.service.segment_jobs import SegmentJobsService
from segmentation_pipelines.settings import get_settings
from segmentation_pipelines.timeutil import iso, parse_time, to_ms

log = logging.getLogger(__name__)

SNAPSHOT_KEY = "segment_catalog_snapshot"
GROUP = "segments"
ASSET_NAME = "evaluate_segments"
HISTORY_LENGTH = 30  # evaluations shown in the member-count series


JOB_NAME = SEGMENT_JOB


def asset_key(definition_id: str, name: str) -> dg.AssetKey:
    return dg.AssetKey(segment_asset_key(definition_id, name))


def entry_key(entry: dict[str, Any]) -> dg.AssetKey:
    """The asset key of a snapshot entry (a definition as the catalog snapshot gives it): the key kept since its
    creation (snapshots pinned before keys were kept have none: the key of its name then)."""
    return dg.AssetKey(entry.get("assetKey") or segment_asset_key(entry["id"], entry.get("name") or ""))


def fetch_snapshot() -> list[dict[str, Any]]:
    """Every definition of the catalog (at code-location load); empty, with a log line, if it cannot be read."""
    settings = get_settings()
    try:
        settings.ensure_home()
        return catalog_snapshot(Catalog.for_url(settings.resolved_catalog_url))
    except Exception:
        log.exception("could not read the segment definitions from the catalog; no segment assets this load")
        return []


def load_snapshot() -> list[dict[str, Any]]:
    return pinned_snapshot(SNAPSHOT_KEY, fetch_snapshot)


def _spec(
    entry: dict[str, Any],
    known: dict[tuple[str, str, str], dict[str, Any]],
    external: frozenset[tuple[str, str, str]] = frozenset(),
) -> dg.AssetSpec:
    expression = entry.get("expression") or {}
    text = expression.get("value")
    text = text if isinstance(text, str) else str(text)
    deps: list[dg.AssetKey] = [merged_profiles_key(entry.get("mergePolicyId") or "default"), EVENTS_KEY]
    for ref in entry.get("dependencies") or []:
        if (entry["org_id"], entry["sandbox"], ref) in known:
            deps.append(entry_key(known[(entry["org_id"], entry["sandbox"], ref)]))
        elif (entry["org_id"], entry["sandbox"], ref) in external:  # an external audience: ingested upstream
            deps.append(dg.AssetKey(external_audience_asset_key(ref)))
    return dg.AssetSpec(
        key=entry_key(entry),
        partitions_def=EVALUATION_DAYS,
        description=f"{entry.get('name')}\n\n{expression.get('format', 'pql/text')}: {text}",
        deps=deps,
        group_name=GROUP,
        kinds={"audience", "duckdb"},
        skippable=True,
        metadata={
            "definition_id": entry["id"],
            "name": entry.get("name") or "",
            "org": entry["org_id"],
            "sandbox": entry["sandbox"],
            "merge_policy_id": entry.get("mergePolicyId") or "",
            "pql": text,
        },
        # The name as a tag too (the catalog's tag filter); the key carries it as well (docs/decisions/dagster-ui.md).
        tags={"segmentation/sandbox": entry["sandbox"], "audience": name_tag(entry.get("name") or "")},
    )


def name_tag(name: str) -> str:
    """A definition's name as a Dagster tag value (letters, digits, ``-_.``; at most 63 characters)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip()).strip("_.-")
    return value[:63].rstrip("_.-") or "unnamed"


def _should_cancel(context: dg.AssetExecutionContext, inner) -> Any:
    """Stop when the job is being cancelled or the Dagster run is (checked at most once a second)."""
    state = {"at": 0.0, "value": False}

    def check() -> bool:
        if state["value"] or (inner is not None and inner()):
            state["value"] = True
            return True
        if time.monotonic() - state["at"] >= 1.0:
            state["at"] = time.monotonic()
            run = context.instance.get_run_by_id(context.run_id)
            if run is not None and run.status in (
                dg.DagsterRunStatus.CANCELING,
                dg.DagsterRunStatus.CANCELED,
            ):
                state["value"] = True
        return state["value"]

    return check


def _materializations(
    ctx: ServiceContext,
    summary: EvaluationSummary,
    by_id: dict[str, dict[str, Any]],
    job_id: str | None,
    instance: dg.DagsterInstance | None = None,
) -> Iterator[dg.MaterializeResult]:
    evaluations = AudienceEvaluations(ctx)
    known_keys = list(instance.get_asset_keys(prefix=["segment"])) if instance is not None else []
    histories = evaluations.histories(summary.order, HISTORY_LENGTH)  # one query, not one per definition
    for ident in summary.order:
        counts = summary.audiences.get(ident, {})
        history = histories[ident]
        series = dg.MetadataValue.table(
            records=[
                dg.TableRecord(
                    {
                        "evaluation_time": iso(e.evaluation_time),
                        "members": int(e.counts.get("members", 0)),
                        "realized": int(e.counts.get("realized", 0)),
                        "existing": int(e.counts.get("existing", 0)),
                        "exited": int(e.counts.get("exited", 0)),
                    }
                )
                for e in history
            ],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn("evaluation_time", "string"),
                    dg.TableColumn("members", "int"),
                    dg.TableColumn("realized", "int"),
                    dg.TableColumn("existing", "int"),
                    dg.TableColumn("exited", "int"),
                ]
            ),
        )
        members = int(counts.get("members", 0))
        evaluation_ms = to_ms(summary.evaluation_time) if summary.evaluation_time else None
        earlier = [e for e in history if evaluation_ms is None or to_ms(e.evaluation_time) < evaluation_ms]
        delta = members - int(earlier[-1].counts.get("members", 0)) if earlier else members
        metadata: dict[str, Any] = {
            # Numeric entries are what Dagster plots across materializations (the asset's "Plots" tab).
            "members": dg.MetadataValue.int(int(counts.get("members", 0))),
            "realized": dg.MetadataValue.int(int(counts.get("realized", 0))),
            "existing": dg.MetadataValue.int(int(counts.get("existing", 0))),
            "exited": dg.MetadataValue.int(int(counts.get("exited", 0))),
            # Members now minus members at the previous evaluation (by evaluation time, not run time).
            "members_delta": dg.MetadataValue.int(delta),
            "by_namespace": dg.MetadataValue.json(dict(counts.get("by_namespace") or {})),
            "evaluation_time": dg.MetadataValue.text(iso(summary.evaluation_time) or ""),
            "duration_s": dg.MetadataValue.float(summary.durations_ms.get(ident, 0) / 1000.0),
            "member_counts": series,
            "sandbox": dg.MetadataValue.text(ctx.sandbox),
            "membership_file": dg.MetadataValue.path(summary.files.get(ident, "")),
        }
        if job_id:
            metadata["segment_job_id"] = dg.MetadataValue.text(job_id)
        metadata["dagster/row_count"] = dg.MetadataValue.int(members)  # shown on the asset's lineage node
        key = entry_key(by_id[ident])
        earlier_keys = renamed_from(instance, known_keys, key, ident) if instance is not None else []
        if earlier_keys:
            metadata["renamed_from"] = dg.MetadataValue.asset(earlier_keys[-1])
        yield dg.MaterializeResult(asset_key=key, metadata=metadata)


def renamed_from(
    instance: dg.DagsterInstance, known_keys: list[dg.AssetKey], key: dg.AssetKey, definition_id: str
) -> list[dg.AssetKey]:
    """The keys earlier versions gave a definition (its id alone; later its current lower-cased name, which moved
    on a rename), on the first materialization under ``key``: the history left under them stays there, and the
    asset links to it (docs/decisions/dagster-ui.md).
    ``known_keys``: the segment keys the instance has events for (read once per run)."""
    earlier = [k for k in known_keys if k != key and is_segment_key_of(k.path, definition_id)]
    if not earlier or instance.get_latest_materialization_event(key) is not None:
        return []
    return earlier


def build_evaluate_segments(snapshot: list[dict[str, Any]]) -> dg.AssetsDefinition | None:
    """The ``evaluate_segments`` multi_asset over ``snapshot`` (None when there are no definitions)."""
    if not snapshot:
        return None
    known = {(e["org_id"], e["sandbox"], e["id"]): e for e in snapshot}
    by_key: dict[dg.AssetKey, dict[str, Any]] = {}
    for entry in snapshot:
        key = entry_key(entry)
        if key in by_key:  # two definitions whose names and id prefixes agree: keep the first, say so
            log.error(
                "segment definitions %s and %s share asset key %s; %s is not loaded",
                by_key[key]["id"],
                entry["id"],
                key.to_user_string(),
                entry["id"],
            )
            continue
        by_key[key] = entry
    external = frozenset((e["org_id"], e["sandbox"], e["id"]) for e in load_external_snapshot())
    specs = [_spec(e, known, external) for e in by_key.values()]

    @dg.multi_asset(specs=specs, can_subset=True, name=ASSET_NAME)
    def evaluate_segments(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        # Each materialization yielded is written while the generator waits: without a checkpoint of Dagster's
        # SQLite event index each (dagster_sqlite.py; a launched run's worker, where the launcher holds none).
        with event_index_held(context.instance):
            yield from _evaluate(context)

    def _evaluate(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        tags = context.run.tags
        if TAG_WORKER not in tags:  # a launched run: name the process doing the work (reconcile.py)
            context.instance.add_run_tags(context.run_id, {TAG_STEP_WORKER: worker_tag()})
        # Only a segment job's run has a segment job to report to (an export that evaluates first has none).
        job_id = tags.get(TAG_JOB_ID) if tags.get(TAG_KIND, KIND_SEGMENT_JOB) == KIND_SEGMENT_JOB else None
        when = tags.get(TAG_EVALUATION_TIME)
        evaluation_time = run_evaluation_time(
            when, context.partition_key if context.has_partition_key else None
        )
        selected = [by_key[k] for k in context.selected_asset_keys if k in by_key]
        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for entry in selected:
            groups[(entry["org_id"], entry["sandbox"])].append(entry)
        wanted = (tags.get(TAG_ORG), tags.get(TAG_SANDBOX))
        if job_id and wanted[0] and wanted[1] and set(groups) - {wanted}:
            raise dg.Failure(
                f"Segment job {job_id} is in {wanted[0]}/{wanted[1]} but selects definitions of other sandboxes: "
                f"{sorted(set(groups) - {wanted})}."
            )
        settings = get_settings()
        for (org, sandbox), entries in sorted(groups.items()):
            ctx = ServiceContext.create(settings, org_id=org, sandbox=sandbox)
            ids = [e["id"] for e in entries]
            order = topological_order(ids, {e["id"]: e.get("dependencies") or [] for e in entries})
            context.log.info(
                "Evaluating %d segment definition(s) of %s/%s at %s: %s",
                len(ids),
                org,
                sandbox,
                evaluation_time.isoformat(),
                ", ".join(order),
            )
            jobs = SegmentJobsService(ctx) if job_id else None
            cancel = _should_cancel(context, jobs.should_cancel(job_id) if jobs else None)
            summary = run_evaluation(
                ctx,
                order,
                evaluation_time,
                job_id=job_id,
                snapshot=entries,
                should_cancel=cancel,
                progress=lambda stage, info: context.log.debug(f"{stage}: {info}"),
            )
            if jobs is not None:
                summary.phases_ms["storeRefresh"] = store_refresh_ms(context)
                jobs.record_evaluation(job_id, summary)
            yield from _materializations(
                ctx, summary, {e["id"]: e for e in entries}, job_id, context.instance
            )

    return evaluate_segments


def store_refresh_ms(context: dg.AssetExecutionContext) -> int:
    """How long the run's other steps took before this one (the stale profile-store assets it refreshed first),
    from Dagster's step stats; 0 when none ran or they cannot be read."""
    try:
        stats = context.instance.get_run_step_stats(context.run_id)
    except Exception:  # the metric is not worth failing an evaluation for
        log.exception("could not read the step stats of run %s", context.run_id)
        return 0
    total = 0.0
    for step in stats:
        if step.start_time is not None and step.end_time is not None and ASSET_NAME not in step.step_key:
            total += step.end_time - step.start_time
    return round(total * 1000)


def run_evaluation_time(tag: str | None, partition_key: str | None) -> dt.datetime:
    """A segment job's evaluation time (its tag); else the partition's (a UI materialization or backfill of an
    evaluation day: the end of that day, or now for today); else now."""
    now = dt.datetime.now(dt.UTC)
    if tag:
        return parse_time(tag, f"run tag {TAG_EVALUATION_TIME}")
    if partition_key:
        return min(partition_evaluation_time(partition_key), now)
    return now


segment_job = dg.define_asset_job(
    JOB_NAME,
    selection=dg.AssetSelection.groups(GROUP, PROFILES_GROUP),
    description="Evaluates the selected segment definitions, after the stale profile-store assets (runs select "
    "their keys via asset_selection).",
)
