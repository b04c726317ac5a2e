"""Evaluate segment definitions and publish their memberships (the body of the segment assets and jobs).

:func:`run_evaluation` takes definition ids of one sandbox and one evaluation time, and:

1. loads the definitions (from the pinned catalog snapshot when given, so a run evaluates what it was launched
   with), checks each against the sandbox's current profile schema, and orders them by their ``inSegment``
   references;
2. evaluates them with the engine in one pass per merge policy (one call for the usual single policy), giving
   each ``inSegment`` reference to an audience outside the pass the current members of that audience;
3. diffs the qualified profiles against each audience's previous evaluation (``engine/memberships.py``) and
   publishes every membership file in one catalog transaction.

One bad definition does not sink the others: a definition that no longer checks or compiles (e.g. the schema
changed under it), or whose evaluation fails, is left out and reported in ``EvaluationSummary.failed`` with its
error, as is every definition that reads it through ``inSegment``; the rest are evaluated and published (an
engine pass that fails is re-run one definition at a time to find the culprit). Only when every definition fails
does the evaluation fail (``docs/decisions/security.md``).

A cancelled or failed evaluation publishes nothing: files are staged under a temporary folder and the catalog rows,
which are what makes them visible, are written last.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segmentation_pipelines import duck, engine
from segmentation_pipelines.engine import memberships
from segmentation_pipelines.errors import ApiError, NotFound
from segmentation_pipelines.pql.references import ReferenceCycle, evaluation_order
from segmentation_pipelines.profiles.layout import StoreLayout, pinned
from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.merge_policies import MergePoliciesService
from segmentation_pipelines.service.profile_store import ProfileStoreService
from segmentation_pipelines.service.segment_definitions import SegmentDefinitionsService
from segmentation_pipelines.service.segment_pql import SegmentPql, profile_schema
from segmentation_pipelines.timeutil import to_ms

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, dict[str, Any]], None]
# The engines that write numbered pairs (EvaluationRequest.profile_numbers).
NUMBERING_ENGINES = ("duckdb", "polars")
STALE_WORK_S = 24 * 3600  # work folders of a killed run are removed by a later run after this long


class EvaluationCancelled(Exception):
    """The evaluation was cancelled; nothing was published."""


@dataclass
class EvaluationSummary:
    """What one evaluation did (the segment job's metrics and the assets' metadata come from it)."""

    evaluation_time: dt.datetime
    evaluation_ms: int
    audiences: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # id -> members/realized/existing/exited/...
    total_profiles: int = 0
    total_profiles_by_merge_policy: dict[str, int] = field(default_factory=dict)
    segmentation_start_ms: int = 0
    segmentation_end_ms: int = 0
    durations_ms: dict[str, int] = field(default_factory=dict)  # id -> duration of the pass that evaluated it
    order: list[str] = field(default_factory=list)  # evaluation (topological) order
    files: dict[str, str] = field(default_factory=dict)
    store_version: dict[str, Any] = field(
        default_factory=dict
    )  # the profile store it read (profile_store.py)
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {"name", "code", "message"}
    # Where the evaluation's time went (ms): preparation (definitions loaded and checked, the store version),
    # evaluation (the engine passes), identities, membershipDiff, publication (see docs/decisions/segment-jobs.md).
    phases_ms: dict[str, int] = field(default_factory=dict)


DEFINITION_FAILED = "SEGP-200422"  # a definition of the job could not be evaluated (the others were)


def topological_order(ids: Iterable[str], dependencies: Mapping[str, Iterable[str]]) -> list[str]:
    """``ids`` so that every definition comes after the ones it references (among ``ids``); a cycle is a 400."""
    try:
        return evaluation_order(ids, dependencies)
    except ReferenceCycle as exc:
        raise ApiError(400, f"{exc} (among the definitions of this job).") from None


def _passes(
    order: list[str], policy: Mapping[str, str], deps: Mapping[str, Iterable[str]]
) -> list[list[str]]:
    """Split the ordered definitions into engine passes: one per merge policy, more only when a definition reads
    one of another policy that is evaluated in this run and not yet done."""
    remaining = list(order)
    done: set[str] = set()
    passes: list[list[str]] = []
    in_run = set(order)
    while remaining:
        first_policy = policy[remaining[0]]
        batch: list[str] = []
        for ident in remaining:
            if policy[ident] != first_policy:
                continue
            needs = set(deps.get(ident, ())) & in_run
            if all(n in done or n in batch for n in needs):
                batch.append(ident)
        passes.append(batch)
        done.update(batch)
        remaining = [i for i in remaining if i not in done]
    return passes


def _load_definitions(
    ctx: ServiceContext, ids: list[str], snapshot: Iterable[Mapping[str, Any]] | Mapping[str, Any] | None
) -> dict[str, dict[str, Any]]:
    if snapshot is not None:
        entries = snapshot.values() if isinstance(snapshot, Mapping) else snapshot
        by_id = {
            e["id"]: dict(e)
            for e in entries
            if e.get("org_id", ctx.org_id) == ctx.org_id and e.get("sandbox", ctx.sandbox) == ctx.sandbox
        }
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise NotFound("Segment definition (in the pinned catalog snapshot)", ", ".join(missing))
        return {i: by_id[i] for i in ids}
    service = SegmentDefinitionsService(ctx)
    return {i: service.get(i) for i in ids}


def run_evaluation(
    ctx: ServiceContext,
    definition_ids: Iterable[str],
    evaluation_time: dt.datetime | None = None,
    job_id: str | None = None,
    snapshot: Iterable[Mapping[str, Any]] | Mapping[str, Any] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    progress: ProgressFn | None = None,
) -> EvaluationSummary:
    """Evaluate ``definition_ids`` (of ``ctx``'s sandbox) at ``evaluation_time`` and publish their memberships."""
    cancelled = should_cancel or (lambda: False)
    report = progress or (lambda _stage, _info: None)
    t = evaluation_time or dt.datetime.now(dt.UTC)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    t = t.astimezone(dt.UTC)
    evaluation_ms = to_ms(t)
    ids = list(dict.fromkeys(definition_ids))
    summary = EvaluationSummary(evaluation_time=t, evaluation_ms=evaluation_ms)
    if not ids:
        return summary

    def check_cancel() -> None:
        if cancelled():
            raise EvaluationCancelled(f"evaluation at {t.isoformat()} was cancelled")

    summary.segmentation_start_ms = int(time.time() * 1000)
    phase_started = time.perf_counter()

    def phase_done(name: str) -> None:
        nonlocal phase_started
        now = time.perf_counter()
        summary.phases_ms[name] = summary.phases_ms.get(name, 0) + round((now - phase_started) * 1000)
        phase_started = now

    definitions = _load_definitions(ctx, ids, snapshot)
    schema = profile_schema(ctx)
    checker = SegmentPql(ctx)
    checked = {}

    def fail(ident: str, message: str) -> None:
        summary.failed[ident] = {
            "name": definitions[ident].get("name"),
            "code": DEFINITION_FAILED,
            "message": f"segment definition '{definitions[ident].get('name')}' ({ident}): {message}",
        }
        log.warning("%s", summary.failed[ident]["message"])

    for ident, d in definitions.items():
        try:
            checked[ident] = checker.check(
                d["expression"], self_id=ident, schema=schema, compile_engines=False
            )
        except ApiError as exc:
            fail(ident, exc.message)
    deps = {i: c.references for i, c in checked.items()}
    order = [i for i in topological_order(list(checked), deps)]
    for ident in order:  # a definition reading a failed one cannot be evaluated either
        bad = sorted(set(deps.get(ident, ())) & set(summary.failed))
        if bad:
            fail(ident, f"it reads audience(s) {', '.join(bad)}, which could not be evaluated")
    order = [i for i in order if i not in summary.failed]
    if not order:
        raise ApiError(400, "; ".join(f["message"] for f in summary.failed.values()))
    summary.order = order
    policy = {i: definitions[i].get("mergePolicyId") or "" for i in ids}
    layout = StoreLayout(ctx.sandbox_root)
    # One store version for the whole evaluation: the published folders are resolved once (a refresh publishing
    # meanwhile does not change what this evaluation reads), and recorded.
    summary.store_version = ProfileStoreService(ctx).version()
    events_path = str(Path(layout.events_path()).parent.resolve() / "*.parquet")
    evaluations = AudienceEvaluations(ctx)
    remove_stale_work(layout)
    held = contextlib.ExitStack()
    held.enter_context(work_lock(layout))  # released in the finally below (and by the OS if the process dies)
    work = layout.tmp_dir() / f"evaluation-{uuid.uuid4().hex}"
    work.mkdir(parents=True)
    report("start", {"definitions": len(ids), "evaluation_time": t.isoformat()})
    phase_done("preparation")
    try:
        qualified: list[Path] = []
        produced: dict[str, Path] = {}  # audience id -> the engine output holding its qualified profiles
        numbers_of: dict[Path, Path] = {}  # an engine output of numbered pairs -> the numbers it used
        profiles_of: dict[str, Path] = {}
        for n, batch in enumerate(_passes(order, policy, deps)):
            check_cancel()
            merge_policy_id = policy[batch[0]]
            if not duck.parquet_exists(layout.profiles_path(merge_policy_id)):
                raise ApiError(
                    409,
                    f"The profile store has no merged profiles for merge policy '{merge_policy_id}' yet "
                    f"({layout.profiles_dir(merge_policy_id)}): ingest profile data first (ingestion builds the "
                    "store).",
                )
            profiles_path = pinned(layout.profiles_path(merge_policy_id))
            # The engine writes each pair's profile number (the diff's profile index) instead of its id.
            numbers = (
                memberships.profile_numbers(
                    layout.memberships_dir(), profiles_path, work / f"pass-{n}" / "numbers.parquet"
                )
                if ctx.settings.engine in NUMBERING_ENGINES
                else None
            )

            def evaluate(
                part: list[str], folder: Path, _profiles=profiles_path, _n=n, _numbers=numbers
            ) -> tuple[Path, int]:
                external = external_members(
                    part, deps, produced, evaluations, evaluation_ms, folder / "external", numbers_of
                )
                output = folder / "qualified.parquet"
                result = engine.evaluate(
                    engine.EvaluationRequest(
                        definitions=[engine.EngineDefinition(i, checked[i].checked) for i in part],
                        profiles_path=_profiles,
                        events_path=events_path,
                        evaluation_time=t,
                        output_path=output,
                        schema=schema,
                        engine=ctx.settings.engine,
                        external_members=external,
                        profile_numbers=_numbers,
                        temp_dir=folder / "spill",
                        should_cancel=cancelled,
                        progress=(lambda info: report("engine", {"pass": _n, "info": info})),
                    )
                )
                check_cancel()
                out = Path(getattr(result, "output_path", output))
                # Never read a missing output as "nobody qualifies": that would exit everyone.
                if not out.exists():
                    raise RuntimeError(f"the engine wrote no output at {out}")
                if _numbers is not None:
                    numbers_of[out] = _numbers
                return out, int(getattr(result, "total_profiles", 0) or 0)

            started = time.monotonic()
            try:
                parts = [(batch, *evaluate(batch, work / f"pass-{n}"))]
            except (engine.EvaluationCancelled, EvaluationCancelled, memberships.MembershipCancelled):
                raise
            except Exception:
                if len(batch) == 1:
                    parts = []
                    fail(batch[0], "its evaluation failed (see the run's log)")
                    log.exception("Evaluating %s failed", batch[0])
                else:  # find the culprit(s): each definition alone, in order (a reader after what it reads)
                    log.exception(
                        "Pass %d failed; evaluating its %d definitions one at a time", n, len(batch)
                    )
                    parts = []
                    for k, ident in enumerate(batch):
                        if set(deps.get(ident, ())) & set(summary.failed):
                            fail(ident, "it reads an audience that could not be evaluated")
                            continue
                        try:
                            out, total = evaluate([ident], work / f"pass-{n}" / f"alone-{k}")
                        except (
                            engine.EvaluationCancelled,
                            EvaluationCancelled,
                            memberships.MembershipCancelled,
                        ):
                            raise
                        except Exception as exc:
                            fail(ident, f"its evaluation failed ({type(exc).__name__})")
                            log.exception("Evaluating %s alone failed", ident)
                            continue
                        parts.append(([ident], out, total))
                        produced[ident] = out
            took = int((time.monotonic() - started) * 1000)
            for part, out, total in parts:
                qualified.append(out)
                for i in part:
                    produced[i] = out
                    profiles_of[i] = profiles_path
                    summary.durations_ms[i] = took
                summary.total_profiles_by_merge_policy[merge_policy_id] = total
        summary.total_profiles = max(summary.total_profiles_by_merge_policy.values(), default=0)
        order = [i for i in order if i not in summary.failed]
        summary.order = order
        if not order:
            raise ApiError(500, "; ".join(f["message"] for f in summary.failed.values()))

        report("diff", {"audiences": len(order)})
        phase_done("evaluation")
        files, counts = publish_memberships(
            ctx,
            qualified,
            order,
            t,
            job_id=job_id,
            profiles_paths=profiles_of,
            should_cancel=cancelled,
            timings=summary.phases_ms,
        )
        phase_started = time.perf_counter()
        summary.audiences = counts
        summary.files = {a: str(p) for a, p in files.items()}
    except (memberships.MembershipCancelled, engine.EvaluationCancelled):
        raise EvaluationCancelled(f"evaluation at {t.isoformat()} was cancelled") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
        held.close()
    phase_done("publication")  # what is left: the work folder removed
    summary.segmentation_end_ms = int(time.time() * 1000)
    report("done", {"audiences": len(summary.audiences)})
    return summary


def publish_memberships(ctx: ServiceContext, *args: Any, **kwargs: Any) -> Any:
    """:func:`_publish_memberships` while holding the sandbox's work lock (its staging folder is then never taken
    for litter by :func:`remove_stale_work`)."""
    with work_lock(StoreLayout(ctx.sandbox_root)):
        return _publish_memberships(ctx, *args, **kwargs)


def _publish_memberships(
    ctx: ServiceContext,
    qualified: Path | list[Path] | None,
    audience_ids: list[str],
    evaluation_time: dt.datetime,
    job_id: str | None = None,
    profiles_paths: Mapping[str, Path] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    timings: dict[str, int] | None = None,
) -> tuple[dict[str, Path], dict[str, dict[str, Any]]]:
    """Diff the qualified ``(audience_id, profile_id)`` pairs of one evaluation against each audience's previous
    membership and publish the result (files, then the catalog rows in one transaction); ``(files, counts)``.

    Also for audiences evaluated elsewhere (external audience ingestion): ``profiles_paths`` (audience id ->
    merged ``profiles.parquet``) supplies the members' ``identityMap`` (default: the sandbox's default merge
    policy). Raises :class:`EvaluationCancelled` (nothing published) when ``should_cancel`` turns true.
    """
    layout = StoreLayout(ctx.sandbox_root)
    evaluations = AudienceEvaluations(ctx)
    evaluation_ms = to_ms(evaluation_time)
    if profiles_paths is None:
        default = layout.profiles_path(MergePoliciesService(ctx).ensure_default()["id"])
        profiles_paths = {a: default for a in audience_ids}
    started = time.perf_counter()
    previous = {a: e.path for a, e in evaluations.latest_for(audience_ids, before_ms=evaluation_ms).items()}
    try:
        diff = memberships.diff_memberships(
            qualified_path=qualified,
            audience_ids=audience_ids,
            previous=previous,
            evaluation_time=evaluation_time,
            profiles_paths=profiles_paths,
            staging_root=layout.memberships_dir(),
            should_cancel=should_cancel,
        )
    except memberships.MembershipCancelled:
        raise EvaluationCancelled(f"evaluation at {evaluation_time.isoformat()} was cancelled") from None
    if should_cancel is not None and should_cancel():
        shutil.rmtree(diff.staging, ignore_errors=True)
        raise EvaluationCancelled(f"evaluation at {evaluation_time.isoformat()} was cancelled")
    diffed = time.perf_counter()
    files = memberships.publish_files(diff, layout.memberships_dir(), evaluation_ms)
    counts = {a: c.as_dict() for a, c in diff.counts.items()}
    try:
        replaced = evaluations.publish(evaluation_ms, files, counts, job_id)
    except BaseException:
        memberships.discard(files.values())
        raise
    memberships.discard(replaced)
    if timings is not None:
        identities = int(diff.timings_ms.get("identities", 0))
        timings["identities"] = timings.get("identities", 0) + identities
        diff_ms = round((diffed - started) * 1000) - identities
        timings["membershipDiff"] = timings.get("membershipDiff", 0) + max(diff_ms, 0)
        publication = round((time.perf_counter() - diffed) * 1000)
        timings["publication"] = timings.get("publication", 0) + publication
    return files, counts


def _work_lock_path(layout: StoreLayout) -> Path:
    layout.sandbox_root.mkdir(parents=True, exist_ok=True)
    return layout.sandbox_root / ".work.lock"


@contextlib.contextmanager
def work_lock(layout: StoreLayout) -> Iterator[None]:
    """Held (shared) while this process has evaluation or staging folders in the sandbox. The OS drops it when
    the process dies, however it dies (kill -9 included): that is how a later run knows the folders are litter."""
    with open(_work_lock_path(layout), "a+") as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def remove_stale_work(layout: StoreLayout) -> int:
    """Remove the ``tmp/evaluation-*`` and ``memberships/.staging-*`` folders a killed run left (never visible:
    no catalog row points into them). When no live process holds the work lock, every such folder is litter;
    otherwise only those older than a day are removed. Called at the start of every evaluation and at startup."""
    candidates = list(layout.tmp_dir().glob("evaluation-*"))
    if layout.memberships_dir().exists():
        candidates += list(layout.memberships_dir().glob(".staging-*"))
    if not candidates:
        return 0
    with open(_work_lock_path(layout), "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except OSError:
            alone = False
        try:
            removed = 0
            now = time.time()
            for folder in candidates:
                try:
                    if alone or now - folder.stat().st_mtime > STALE_WORK_S:
                        shutil.rmtree(folder, ignore_errors=True)
                        removed += 1
                except OSError:
                    pass
            return removed
        finally:
            if alone:
                fcntl.flock(f, fcntl.LOCK_UN)


def remove_stale_work_everywhere(data_root: Path) -> int:
    """:func:`remove_stale_work` for every sandbox under ``data_root`` (``<org>/<sandbox>``): at startup."""
    removed = 0
    if Path(data_root).is_dir():
        for sandbox_root in Path(data_root).glob("*/*"):
            if sandbox_root.is_dir():
                removed += remove_stale_work(StoreLayout(sandbox_root))
    return removed


def external_members(
    batch: list[str],
    deps: Mapping[str, Iterable[str]],
    produced: Mapping[str, Path],
    evaluations: AudienceEvaluations,
    evaluation_ms: int,
    folder: Path,
    numbers_of: Mapping[Path, Path] | None = None,
) -> dict[str, Path]:
    """For every audience a pass reads but does not evaluate: a Parquet of its current members' ``profile_id``.

    An audience evaluated by an earlier pass of this run contributes its new qualified set (numbered pairs, in
    ``numbers_of``, turned back into ids); any other audience its membership as of the evaluation time (an
    audience never evaluated has nobody).
    """
    in_batch = set(batch)
    needed = sorted({r for i in batch for r in deps.get(i, ()) if r not in in_batch})
    if not needed:
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    stored = evaluations.latest_for([r for r in needed if r not in produced], before_ms=evaluation_ms + 1)
    for k, ref in enumerate(needed):
        target = folder / f"{k}.parquet"
        if ref in produced:
            con = duck.connect()
            try:
                numbers = (numbers_of or {}).get(produced[ref])
                ids = (
                    "SELECT DISTINCT n.profile_id FROM read_parquet($src) q "
                    f"JOIN read_parquet({duck.sql_str(numbers)}) n ON n.pidx = q.pidx WHERE q.audience_id = $aid"
                    if numbers is not None
                    else "SELECT DISTINCT profile_id FROM read_parquet($src) WHERE audience_id = $aid"
                )
                con.execute(
                    f"COPY ({ids}) TO {duck.sql_str(target)} (FORMAT parquet)",
                    {"src": str(produced[ref]), "aid": ref},
                )
            finally:
                con.close()
        else:
            evaluation = stored.get(ref)
            at = dt.datetime.fromtimestamp(evaluation_ms / 1000, tz=dt.UTC)  # external audiences' TTL
            memberships.write_current_members(evaluation.path if evaluation else None, target, at=at)
        out[ref] = target
    return out
