"""Previews and estimates (``/preview``, ``/estimate``): who qualifies for a PQL expression, and how many, within
about a second, without a Dagster run.

``POST /preview`` checks the expression as a segment definition is checked (a 400 with line and column), records the
preview ``NEW`` and hands it to a small thread pool of this process (bounded concurrency; a time limit; ``DELETE``
cancels). The worker evaluates the expression with the segment jobs' engine, chunk after chunk, on a random sample
of the merged profiles and their events (``engine/sampling.py``; the whole store under 1M profiles, so small stores
are exact), and every chunk refines the estimate (``GET /estimate/{id}``) and adds members to the pages
(``GET /preview/{id}``). Relative times (``now``, ``7 days before now``) are anchored to the time of the request,
reported as ``evaluationTime``.

``baseSegmentId`` in the body (an extension) evaluates an existing definition beside the new expression on the
same profiles, at the same time: the shadow diff of who would enter and who would exit if the definition were
changed to the expression.

State lives in the memory of the process that created the preview (the API process, or the in-process client);
previews are kept for ``RETENTION_S`` after they end (docs/decisions/previews.md).
"""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pyarrow.compute as pc
import pyarrow.parquet as pq

from segmentation_pipelines import duck, engine, pql
from segmentation_pipelines.engine import sampling
from segmentation_pipelines.errors import ApiError, BadRequest, NotFound
from segmentation_pipelines.pql.references import canonical_references
from segmentation_pipelines.profiles import store
from segmentation_pipelines.profiles.layout import StoreLayout, new_version_dir, pinned, publish_version
from segmentation_pipelines.profiles.manifest import part_lock
from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.merge_policies import MergePoliciesService
from segmentation_pipelines.service.segment_definitions import SegmentDefinitionsService
from segmentation_pipelines.service.segment_evaluation import external_members
from segmentation_pipelines.service.segment_pql import (
    CheckedExpression,
    SegmentPql,
    expression_text,
    pql_error,
    profile_schema,
)
from segmentation_pipelines.timeutil import iso, to_ms

UPS = "/data/core/ups"
NEW, RUNNING, RESULT_READY, FAILED = "NEW", "RUNNING", "RESULT_READY", "FAILED"
TERMINAL = (RESULT_READY, FAILED)
PREVIEW_ID = "__preview__"  # the engine's audience id of the previewed expression
DEFAULT_LIMIT, MAX_LIMIT = 1000, 10_000
DEFAULT_TIME_LIMIT_S, MAX_TIME_LIMIT_S = 60.0, 600.0
MAX_CONCURRENT = 2  # previews evaluating at once in one process (the machine's cores are shared with jobs)
MAX_ACTIVE = 32  # previews queued or running in one process; more is a 429
RETENTION_S = 3600.0  # a finished preview stays readable this long
MAX_KEPT = 1000  # finished previews kept per process (the oldest are forgotten first)
MODELS = {"_xdm.context.profile", "xdm.model.profile"}
GRAPH_TYPES = {"pdg", "none"}


@dataclass
class _Preview:
    id: str
    query_id: str
    org_id: str
    sandbox: str
    expression: str
    evaluation_time: dt.datetime
    merge_policy_id: str
    graph_type: str
    time_limit_s: float
    work: Path
    base: dict[str, Any] | None = None  # the definition a shadow diff compares against
    state: str = NEW
    error: dict[str, str] | None = None
    created: float = field(default_factory=time.time)
    ended: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: float = 0.0
    # progress
    total: int = 0
    to_read: int = 0
    exact: bool = False
    chunks: list[dict[str, Any]] = field(default_factory=list)  # per chunk done: output, counts, profiles
    namespaces: dict[str, int] = field(default_factory=dict)
    sample: dict[str, Any] = field(default_factory=dict)
    sample_folder: Path | None = None  # the version it read (pages join its profiles for their identities)
    timings: dict[str, float] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return sum(c["counts"][kind] for c in self.chunks)

    @property
    def read(self) -> int:
        return sum(c["profiles"] for c in self.chunks)


_lock = threading.Lock()
_previews: dict[str, _Preview] = {}
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=MAX_CONCURRENT, thread_name_prefix="preview")
        return _pool


def _forget_old() -> None:
    """Forget previews ended more than ``RETENTION_S`` ago, and the oldest beyond ``MAX_KEPT``, with their files."""
    now = time.time()
    with _lock:
        ended = sorted((p for p in _previews.values() if p.ended is not None), key=lambda p: p.ended)
        old = [p for p in ended if now - p.ended > RETENTION_S]
        old += [p for p in ended[: max(0, len(ended) - MAX_KEPT)] if p not in old]
        for p in old:
            _previews.pop(p.id, None)
    for p in old:
        shutil.rmtree(p.work, ignore_errors=True)


def _remove_orphans(folder: Path) -> None:
    """Work folders no preview of this process owns and older than the retention (a process that was stopped)."""
    now = time.time()
    with _lock:
        owned = {p.work.name for p in _previews.values()}
    for work in folder.glob("*") if folder.is_dir() else ():
        try:
            if work.name not in owned and now - work.stat().st_mtime > RETENTION_S:
                shutil.rmtree(work, ignore_errors=True)
        except OSError:
            pass


def _sql(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


# --- the sample ----------------------------------------------------------------------------------------------------


def sample_dir(ctx: ServiceContext, merge_policy_id: str) -> Path:
    return StoreLayout(ctx.sandbox_root).store_dir / "preview_sample" / merge_policy_id


def _store_source(ctx: ServiceContext, merge_policy_id: str) -> dict[str, Any]:
    version = store.store_version(StoreLayout(ctx.sandbox_root), [merge_policy_id])
    return {"events": version["events"], "mergedProfiles": version["mergedProfiles"][merge_policy_id]}


def ensure_sample(ctx: ServiceContext, merge_policy_id: str) -> sampling.Sample:
    """The current sample of the merged profiles of ``merge_policy_id`` and their events: drawn again when the
    published store changed since it was drawn (or the configured size did)."""
    layout = StoreLayout(ctx.sandbox_root)
    if not layout.profiles_dir(merge_policy_id).exists():
        raise ApiError(
            409,
            f"The profile store has no merged profiles for merge policy '{merge_policy_id}' yet: ingest profile "
            "data first (ingestion builds the store).",
        )
    parent = sample_dir(ctx, merge_policy_id)
    wanted_size = ctx.settings.preview_sample_size

    def usable(s: sampling.Sample | None, source: dict[str, Any]) -> bool:
        return (
            s is not None and s.source.get("store") == source and s.source.get("sizeSetting") == wanted_size
        )

    source = _store_source(ctx, merge_policy_id)
    current = sampling.Sample.load(parent / "current")
    if usable(current, source):
        return current
    with part_lock(parent):
        source = _store_source(ctx, merge_policy_id)
        current = sampling.Sample.load(parent / "current")
        if usable(current, source):
            return current
        folder = new_version_dir(parent)
        try:
            sampling.build_sample(
                pinned(layout.profiles_path(merge_policy_id)),
                Path(layout.events_path()).parent.resolve(),
                folder,
                size=wanted_size,
                seed=ctx.settings.preview_sample_seed,
                source={"store": source, "sizeSetting": wanted_size},
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        publish_version(parent, folder)
        built = sampling.Sample.load(parent / "current")
        assert built is not None
        return built


# --- the work -------------------------------------------------------------------------------------------------------


def _chunk_extras(
    p: _Preview, output: Path, namespaces_path: Path, profiles_path: Path | None = None
) -> tuple[dict[str, int], dict[str, int], Path | None]:
    """Of one chunk's output, on one connection: enter/exit counts (shadow diff), the namespaces of its matching
    profiles and, given ``profiles_path``, its members with their identity maps in page order (profile id),
    written next to the output (the first pages, served without reading the chunk's profiles again)."""
    con = duck.connect()
    try:
        counts: dict[str, int] = {}
        if p.base is not None:
            enter, leave = con.execute(
                f"SELECT count(*) FILTER (WHERE n AND NOT b), count(*) FILTER (WHERE b AND NOT n) FROM ("
                f"SELECT profile_id, bool_or(audience_id = $new) AS n, bool_or(audience_id = $base) AS b "
                f"FROM read_parquet({_sql(output)}) GROUP BY profile_id)",
                {"new": PREVIEW_ID, "base": p.base["id"]},
            ).fetchone()
            counts = {"enter": int(enter), "exit": int(leave)}
        members = None
        if profiles_path is not None:
            members = output.with_name(f"{output.stem}-members.parquet")
            con.execute(
                f"COPY (SELECT k.profile_id, p.identityMap FROM (SELECT profile_id FROM read_parquet({_sql(output)}) "
                f"WHERE audience_id = {_sql(PREVIEW_ID)}) AS k LEFT JOIN read_parquet({_sql(profiles_path)}) AS p "
                f"USING (profile_id) ORDER BY k.profile_id) TO {_sql(members)} (FORMAT parquet)"
            )
            # The namespaces of the matches are the keys of the identity maps just written (the chunk's
            # namespaces file holds the same keys, for chunks whose members are not written).
            matches = (
                f"SELECT profile_id, unnest(list_transform(identityMap, lambda e: e.key)) AS ns "
                f"FROM read_parquet({_sql(members)})"
            )
        else:
            matches = (
                f"SELECT profile_id, unnest(namespaces) AS ns FROM read_parquet({_sql(namespaces_path)}) "
                f"WHERE profile_id IN (SELECT profile_id FROM read_parquet({_sql(output)}) "
                f"WHERE audience_id = {_sql(PREVIEW_ID)})"
            )
        rows = con.execute(f"SELECT ns, count(DISTINCT profile_id) FROM ({matches}) GROUP BY ns").fetchall()
        return counts, {str(ns): int(n) for ns, n in rows if ns is not None}, members
    finally:
        con.close()


def _run(p: _Preview, ctx: ServiceContext, checked: Any, schema: pql.Schema) -> None:
    if p.cancel.is_set():  # deleted while it waited for a worker
        return
    started = time.monotonic()
    p.deadline = started + p.time_limit_s
    p.state = RUNNING

    def stop() -> bool:
        return p.cancel.is_set() or time.monotonic() > p.deadline

    try:
        sample = ensure_sample(ctx, p.merge_policy_id)
        p.timings["sample_s"] = round(time.monotonic() - started, 3)
        p.deadline = time.monotonic() + p.time_limit_s  # drawing a shared sample is not this preview's time
        p.total, p.to_read, p.exact = sample.total_profiles, sample.size, sample.exact
        p.sample_folder = sample.folder
        p.sample = {
            "size": sample.size,
            "chunks": len(sample.chunks),
            "drawnAt": sample.built_at,
            "exact": sample.exact,
        }
        definitions = [engine.EngineDefinition(PREVIEW_ID, checked.checked)]
        deps = {PREVIEW_ID: list(checked.references)}
        if p.base is not None:
            definitions.append(engine.EngineDefinition(p.base["id"], p.base["checked"].checked))
            deps[p.base["id"]] = list(p.base["checked"].references)
        ids = [d.id for d in definitions]
        external = external_members(
            ids,
            deps,
            {},
            AudienceEvaluations(ctx),
            to_ms(p.evaluation_time),
            p.work / "external",
        )

        def on_chunk(result: sampling.ChunkResult) -> None:
            chunk = sample.chunks[result.index]
            # The first pages, with their identities, written before the next (larger) pass starts: read while
            # that pass runs, the profiles' identity maps would compete with it for the cores.
            last = result.index == len(sample.chunks) - 1
            extra, namespaces, members = _chunk_extras(
                p, result.output_path, chunk.namespaces_path, None if last else chunk.profiles_path
            )
            # The default first page of the first chunk, ready to serve: built now, while the cores are free,
            # rather than when it is asked for, while the next pass holds them (docs/decisions/previews.md).
            head = None
            if members is not None and result.index == 0:
                head = [
                    _entity(pid, identity_map, p.merge_policy_id)
                    for pid, identity_map in _members_rows(members, 0, DEFAULT_LIMIT)
                ]
            counts = {"members": result.counts.get(PREVIEW_ID, 0), **extra}
            if p.base is not None:
                counts["base"] = result.counts.get(p.base["id"], 0)
            with _lock:
                for ns, n in namespaces.items():
                    p.namespaces[ns] = p.namespaces.get(ns, 0) + n
                p.chunks.append(
                    {
                        "output": result.output_path,
                        "profiles": result.profiles,
                        "counts": counts,
                        "index": result.index,
                        "members": members,
                        "head": head,
                    }
                )
            if len(p.chunks) == 1:
                p.timings["first_chunk_s"] = round(time.monotonic() - started, 3)

        sampling.evaluate_chunks(
            sample,
            definitions,
            schema,
            p.evaluation_time,
            p.work / "chunks",
            engine_name=ctx.settings.engine,
            external_members=external,
            should_cancel=stop,
            on_chunk=on_chunk,
        )
        p.state = RESULT_READY
    except engine.EvaluationCancelled:
        if not p.cancel.is_set():
            p.error = {
                "description": f"The preview exceeded its time limit of {p.time_limit_s:g} s after reading "
                f"{p.read} of {p.to_read} sampled profiles (the estimate shows what was read).",
                "traceback": "",
            }
        p.state = FAILED
    except ApiError as exc:
        p.error = {"description": exc.message, "traceback": ""}
        p.state = FAILED
    except Exception as exc:  # noqa: BLE001 - reported to the caller as the contract's error object
        p.error = {"description": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
        p.state = FAILED
    finally:
        p.timings["total_s"] = round(time.monotonic() - started, 3)
        p.ended = time.time()
        if p.cancel.is_set():
            shutil.rmtree(p.work, ignore_errors=True)


# --- reading the results ---------------------------------------------------------------------------------------------


def _kind_sql(p: _Preview, kind: str, output: Path) -> str:
    src = f"read_parquet({_sql(output)})"
    if kind == "members":
        return f"SELECT profile_id FROM {src} WHERE audience_id = {_sql(PREVIEW_ID)}"
    base = _sql(p.base["id"])
    new = _sql(PREVIEW_ID)
    inside, outside = (new, base) if kind == "enter" else (base, new)
    return (
        f"SELECT profile_id FROM {src} GROUP BY profile_id "
        f"HAVING bool_or(audience_id = {inside}) AND NOT bool_or(audience_id = {outside})"
    )


def _members_rows(path: Path, offset: int, limit: int) -> list[tuple[str, Any]]:
    """Rows ``offset``..``offset+limit`` of a chunk's members file (written in profile id order), read with Arrow:
    a first page is served while the next chunk's pass holds the cores, and a DuckDB connection and query plan
    for a few thousand rows cost more than the read."""
    table = pq.read_table(path, columns=["profile_id", "identityMap"])
    ids = table.column("profile_id")
    if len(table) > 1 and not pc.all(pc.less_equal(ids[:-1], ids[1:])).as_py():
        table = table.sort_by("profile_id")
    page = table.slice(offset, limit)
    return list(
        zip(page.column("profile_id").to_pylist(), page.column("identityMap").to_pylist(), strict=True)
    )


def _page(p: _Preview, ctx: ServiceContext, kind: str, offset: int, limit: int) -> tuple[list[dict], bool]:
    """Page ``offset``..``offset+limit`` of ``kind`` (members/enter/exit), in a fixed order (chunk, profile id), so
    pages never change once served; ``(items, available)`` (not available while the chunks that hold it run)."""
    with _lock:
        chunks = list(p.chunks)
    done = sum(c["counts"][kind] for c in chunks)
    if p.state not in TERMINAL and done < offset + limit:
        return [], False
    items: list[dict] = []
    skip, want = offset, limit
    sample: sampling.Sample | None = None
    con = None
    try:
        for c in sorted(chunks, key=lambda c: c["index"]):
            n = c["counts"][kind]
            if skip >= n:
                skip -= n
                continue
            head = c.get("head") if kind == "members" else None
            if head is not None and (skip + want <= len(head) or len(head) >= n):
                items.extend(_copy_entity(e) for e in head[skip : skip + want])
            else:
                if sample is None and p.sample_folder is not None:
                    sample = sampling.Sample.load(p.sample_folder)
                con = con or duck.connect()
                profiles = sample.chunks[c["index"]].profiles_path if sample else None
                ids_sql = f"{_kind_sql(p, kind, c['output'])} ORDER BY profile_id LIMIT {want} OFFSET {skip}"
                if kind == "members" and c.get("members") is not None:
                    rows = _members_rows(c["members"], skip, want)
                elif profiles is not None and profiles.parent.is_dir():
                    rows = con.execute(
                        f"SELECT k.profile_id, p.identityMap FROM ({ids_sql}) AS k "
                        f"LEFT JOIN read_parquet({_sql(profiles)}) AS p USING (profile_id) ORDER BY k.profile_id"
                    ).fetchall()
                else:  # the sample this preview read was replaced twice since: ids only
                    rows = [(r[0], None) for r in con.execute(ids_sql).fetchall()]
                items.extend(_entity(pid, identity_map, p.merge_policy_id) for pid, identity_map in rows)
            skip, want = 0, limit - len(items)
            if want <= 0:
                break
    finally:
        if con is not None:
            con.close()
    return items, True


def _copy_entity(entity: dict[str, Any]) -> dict[str, Any]:
    """A result kept for later pages, copied for one answer (an in-process caller may change what it gets)."""
    return {**entity, "relatedObjects": [dict(r) for r in entity["relatedObjects"]]}


def _lookup(namespace: str, value: str, merge_policy_id: str) -> str:
    query = {
        "schema.name": "_xdm.context.profile",
        "entityIdNS": namespace,
        "entityId": value,
        "mergePolicyId": merge_policy_id,
    }
    return f"{UPS}/access/entities?{urlencode(query)}"


def _entity(profile_id: str, identity_map: Any, merge_policy_id: str) -> dict[str, Any]:
    """A result as the OpenAPI's PreviewResults: the profile, its profile-lookup link, and its identities."""
    related = []
    primary = None
    for entry in identity_map or []:
        for ident in entry.get("value") or []:
            item = {
                "objectId": ident["id"],
                "namespace": entry["key"],
                "_href": _lookup(entry["key"], ident["id"], merge_policy_id),
            }
            related.append(item)
            if ident.get("primary") and primary is None:
                primary = item
    primary = primary or (related[0] if related else None)
    return {
        "objectId": profile_id,
        "_href": primary["_href"] if primary else None,
        "relatedObjects": related,
    }


def _parse_int(value: Any, name: str, default: int, maximum: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise BadRequest(f"query parameter '{name}': '{value}' is not an integer.") from None
    if number < 0 or number > maximum:
        raise BadRequest(f"query parameter '{name}': {number} is outside 0..{maximum}.")
    return number


# --- the services ----------------------------------------------------------------------------------------------------


class PreviewsService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def _find(self, id: str) -> _Preview:  # noqa: A002 - the API's name
        _forget_old()
        with _lock:
            p = _previews.get(id)
        if p is None or p.org_id != self.ctx.org_id or p.sandbox != self.ctx.sandbox:
            raise NotFound("Preview", id)
        return p

    def _check(self, text: str, where: str, schema: pql.Schema) -> Any:
        resolver = SegmentPql(self.ctx).resolve_audience
        try:
            query = canonical_references(pql.parse(text), resolver)
            checked = pql.check(query, schema, resolve_audience=resolver)
        except pql.PQLError as exc:
            raise pql_error(exc, where) from None
        references = sorted(set(getattr(checked, "referenced_audiences", ()) or ()))
        return CheckedExpression(text=text, checked=checked, references=references)

    def create(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise BadRequest("The request body must be a JSON object with 'predicateExpression'.")
        text = body.get("predicateExpression")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest("field 'predicateExpression': required, the PQL text to preview.")
        ptype = body.get("predicateType") or "pql/text"
        if str(ptype).lower() not in ("pql/text", "pql"):
            raise BadRequest(f"field 'predicateType': only 'pql/text' is accepted, not {ptype!r}.")
        model = body.get("predicateModel") or "_xdm.context.profile"
        if model not in MODELS:
            raise BadRequest(
                f"field 'predicateModel': only '_xdm.context.profile' is accepted, not {model!r}."
            )
        graph = body.get("graphType") or "pdg"
        if graph not in GRAPH_TYPES:
            raise BadRequest(f"field 'graphType': expected 'pdg' or 'none', not {graph!r}.")
        limit_s = body.get("timeLimitSeconds", DEFAULT_TIME_LIMIT_S)
        if (
            not isinstance(limit_s, int | float)
            or isinstance(limit_s, bool)
            or not 0 < limit_s <= MAX_TIME_LIMIT_S
        ):
            raise BadRequest(f"field 'timeLimitSeconds': a number of seconds in (0, {MAX_TIME_LIMIT_S:g}].")
        schema = profile_schema(self.ctx)
        checked = self._check(text, "predicateExpression", schema)
        base = None
        base_id = body.get("baseSegmentId")
        if base_id is not None:
            if not isinstance(base_id, str):
                raise BadRequest("field 'baseSegmentId': the id of an existing segment definition.")
            definition = SegmentDefinitionsService(self.ctx).get(base_id)
            base_text = expression_text(definition["expression"])
            base = {
                "id": base_id,
                "name": definition.get("name"),
                "expression": base_text,
                "checked": self._check(base_text, f"baseSegmentId '{base_id}'", schema),
            }
            policy = MergePoliciesService(self.ctx).resolve(
                body.get("mergePolicyId") or definition.get("mergePolicyId")
            )
        else:
            policy = MergePoliciesService(self.ctx).resolve(body.get("mergePolicyId"))
        if not StoreLayout(self.ctx.sandbox_root).profiles_dir(policy["id"]).exists():
            raise ApiError(
                409,
                f"The profile store has no merged profiles for merge policy '{policy['id']}' yet: ingest profile "
                "data first (ingestion builds the store).",
            )
        _forget_old()
        _remove_orphans(StoreLayout(self.ctx.sandbox_root).tmp_dir() / "previews")
        with _lock:
            active = sum(1 for q in _previews.values() if q.state not in TERMINAL)
        if active >= MAX_ACTIVE:
            raise ApiError(
                429, f"{active} previews are queued or running in this process; retry in a few seconds."
            )
        query_id = str(uuid.uuid4())
        preview_id = base64.urlsafe_b64encode(f"{self.ctx.sandbox}:{query_id}".encode()).decode().rstrip("=")
        p = _Preview(
            id=preview_id,
            query_id=query_id,
            org_id=self.ctx.org_id,
            sandbox=self.ctx.sandbox,
            expression=checked.text,
            evaluation_time=dt.datetime.now(dt.UTC),
            merge_policy_id=policy["id"],
            graph_type=graph,
            time_limit_s=float(limit_s),
            work=StoreLayout(self.ctx.sandbox_root).tmp_dir() / "previews" / query_id,
            base=base,
        )
        with _lock:
            _previews[p.id] = p
        _executor().submit(_run, p, self.ctx, checked, schema)
        return {
            "state": NEW,
            "previewQueryId": query_id,
            "previewQueryStatus": NEW,
            "previewId": p.id,
            "previewExecutionId": 0,
            "evaluationTime": iso(p.evaluation_time),
            "relativeTimesAnchoredTo": "request",
        }

    def get(self, id: str, offset: Any = None, limit: Any = None, **_query: Any) -> dict[str, Any]:  # noqa: A002
        p = self._find(id)
        start = _parse_int(offset, "offset", 0, 2**62)
        size = _parse_int(limit, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        state = p.state
        items, available = _page(p, self.ctx, "members", start, size)
        self_link = f"{UPS}/preview/{p.id}?offset={start}&limit={size}"
        links: dict[str, Any] = {"_self": self_link, "next": "", "prev": ""}
        matched = p.count("members")
        if available and (state not in TERMINAL or start + len(items) < matched):
            links["next"] = f"{UPS}/preview/{p.id}?offset={start + size}&limit={size}"
        if start > 0:
            links["prev"] = f"{UPS}/preview/{p.id}?offset={max(0, start - size)}&limit={size}"
        out: dict[str, Any] = {
            "results": items,
            "state": state,
            "page": {"offset": start, "size": len(items)},
            "link": links,
            "links": links,
            "previewId": p.id,
            "evaluationTime": iso(p.evaluation_time),
            "relativeTimesAnchoredTo": "request",
            "profilesMatchedSoFar": matched,
            "sampled": not p.exact,
        }
        if not available:
            out["message"] = "The profiles of this page are still being read; ask again shortly."
        if p.error:
            out["error"] = p.error
        if p.base is not None:
            out["shadowDiff"] = self._diff(p, start, size)
        return out

    def _diff(self, p: _Preview, start: int, size: int) -> dict[str, Any]:
        diff: dict[str, Any] = {
            "baseSegmentId": p.base["id"],
            "baseSegmentName": p.base["name"],
            "baseExpression": p.base["expression"],
            "baseMatchedSoFar": p.count("base") if p.chunks else 0,
        }
        for kind in ("enter", "exit"):
            n = p.count(kind) if p.chunks else 0
            est = sampling.estimate(n, p.read, p.total)
            items, available = _page(p, self.ctx, kind, start, size)
            diff[kind] = {
                "profilesMatchedSoFar": n,
                "estimatedSize": est.size,
                "estimatedSizeLow": est.low,
                "estimatedSizeHigh": est.high,
                "results": items,
                "page": {"offset": start, "size": len(items)},
            }
        return diff

    def delete(self, id: str) -> dict[str, Any]:  # noqa: A002 - the API's name
        p = self._find(id)
        p.cancel.set()
        with _lock:
            _previews.pop(p.id, None)
        if p.state in TERMINAL:
            shutil.rmtree(p.work, ignore_errors=True)
        return {"status": True, "message": "KILLED"}

    def prepare_sample(self, merge_policy_id: str | None = None) -> dict[str, Any]:
        """Draw the sample now (previews otherwise draw it on first use after the store changed)."""
        policy = MergePoliciesService(self.ctx).resolve(merge_policy_id)
        s = ensure_sample(self.ctx, policy["id"])
        return {
            "mergePolicyId": policy["id"],
            "totalRows": s.total_profiles,
            "numRowsToRead": s.size,
            "chunks": len(s.chunks),
            "exact": s.exact,
            "drawnAt": s.built_at,
            "drawSeconds": s.build_seconds,
        }


class EstimatesService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def get(self, id: str) -> dict[str, Any]:  # noqa: A002 - the API's name
        p = PreviewsService(self.ctx)._find(id)
        with _lock:
            matched, read = p.count("members"), p.read
            namespaces = dict(p.namespaces)
        est = sampling.estimate(matched, read, p.total)
        scale = (p.total / read) if read else 0.0
        return {
            "estimatedSize": est.size,
            "estimatedSizeLow": est.low,
            "estimatedSizeHigh": est.high,
            "confidenceInterval": "95%",
            "standardError": round(est.standard_error),
            "numRowsToRead": p.to_read,
            "totalRows": p.total,
            "profilesReadSoFar": read,
            "profilesMatchedSoFar": matched,
            "estimatedNamespaceDistribution": [
                {"namespaceId": ns, "profilesMatchedSoFar": n, "estimatedSize": round(n * scale)}
                for ns, n in sorted(namespaces.items())
            ],
            "state": p.state,
            "exact": p.exact and p.state == RESULT_READY,
            "evaluationTime": iso(p.evaluation_time),
            "relativeTimesAnchoredTo": "request",
            "sample": dict(p.sample),
            "error": p.error or {"description": "", "traceback": ""},
            "_links": {"preview": f"{UPS}/preview/{p.id}"},
        }
