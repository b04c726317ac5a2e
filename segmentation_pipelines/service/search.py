"""Segment search (``/search/namespaces``, ``/search/entities``, ``/search/taxonomy``) over one sandbox.

The searchable entities are the sandbox's folders and audiences (every segment definition is an audience,
namespace ``AEPSegments``; external audiences carry their own namespace, e.g. ``CustomerAudienceUpload``). The
query ``s`` is parsed by :mod:`segmentation_pipelines.search.lucene` and run on an in-memory tantivy index
(:mod:`segmentation_pipelines.search.index`), kept per sandbox in this process and brought up to date
incrementally when the catalog's folders or audiences changed: every search first reads a fingerprint (row count,
largest and summed update time of both tables), one small query, so a change made by any process (API, Dagster
run, another worker) is seen by the next search, which re-indexes only the rows changed since (``_catch_up``).
See docs/decisions/search.md.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from segmentation_pipelines.catalog import models
from segmentation_pipelines.errors import ApiError, BadRequest
from segmentation_pipelines.search import lucene
from segmentation_pipelines.search.index import Entry, SearchIndex
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.folders import DEFAULT_NAMESPACE, ROOT
from segmentation_pipelines.service.query import parse_int

SCHEMA_NAME = "_xdm.context.segmentdefinition"
SEARCH_VERSION = "1.0"
DEFAULT_LIMIT = MAX_LIMIT = 50
NOT_FOUND_CODE = "UPAPI-113000-404"
DISPLAY_NAMES = {
    "AEPSegments": "Segmentation Service",
    "CustomerAudienceUpload": "Custom upload",
    "AAMSegments": "Audience Manager segments",
    "AAMTraits": "Audience Manager traits",
}
SUCCESS = {"message": "Success"}

log = logging.getLogger(__name__)
_lock = threading.Lock()


@dataclass
class _Indexed:
    """A sandbox's index and what it reflects: the catalog fingerprint, the folders, each audience's update time."""

    index: SearchIndex = field(default_factory=SearchIndex)
    fingerprint: tuple | None = None
    folders: dict[str, Any] = field(default_factory=dict)
    audience_updated_ms: dict[str, int] = field(default_factory=dict)


_cache: dict[tuple[str, str, str], _Indexed] = {}


def _locations(folders: dict[str, Any]):
    """``folder id -> "/"-joined names from the root down to it`` (memoised for one catch-up)."""
    names = {f.id: (f.name, f.parent_folder_id) for f in folders.values()}
    memo: dict[str, str] = {}

    def location(folder_id: str) -> str:
        if folder_id not in memo:
            parts, seen, current = [], set(), folder_id
            while current in names and current not in seen:
                seen.add(current)
                name, current = names[current]
                parts.append(name)
            memo[folder_id] = "/".join(reversed(parts))
        return memo[folder_id]

    return location


def check_version(value: str | None) -> None:
    """The ``x-ups-search-version`` header every ``/search/*`` call carries."""
    if value != SEARCH_VERSION:
        got = "missing" if value is None else f"'{value[:20]}'"
        raise BadRequest(f"header x-ups-search-version: required, '{SEARCH_VERSION}' (got {got}).")


def _source_id(entry: Entry) -> dict[str, Any]:
    return {"id": entry.id, "namespace": entry.namespace, "isFolder": entry.is_folder}


def _encoded(entry: Entry) -> str:
    raw = json.dumps(_source_id(entry), separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(raw).decode()


class SearchService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    # --- operations ------------------------------------------------------------------------------------------------
    def namespaces(self, **query: Any) -> dict[str, Any]:
        self._schema(query)
        index = self.index()
        counts = {ns: 0 for ns in self._namespaces(index)}
        for entry, _ in self._matches(index, query.get("s")):
            counts[entry.namespace] = counts.get(entry.namespace, 0) + 1
        rows = [
            {"namespace": ns, "displayName": DISPLAY_NAMES.get(ns, ns), "count": n}
            for ns, n in sorted(counts.items())
        ]
        return {"namespaces": rows, "totalCount": str(len(rows)), "status": dict(SUCCESS)}

    def entities(self, **query: Any) -> dict[str, Any]:
        self._schema(query, also="schemaClass")
        namespace = self._namespace(query)
        limit = parse_int(query.get("limit"), "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        page = parse_int(query.get("page"), "page", 0)
        folder = query.get("entityId")
        index = self.index()
        if folder not in (None, "", ROOT) and not any(
            e.is_folder and e.id == folder and e.namespace == namespace for e in index.entries
        ):
            raise ApiError(
                404, f"entityId: no folder '{folder}' in namespace {namespace}.", code=NOT_FOUND_CODE
            )
        found = [
            (e, score)
            for e, score in self._matches(index, query.get("s"))
            if e.namespace == namespace and (not folder or e.folder_id == folder)
        ]
        # Folders first, then the best matches, then by name (case-insensitive) and id: a stable order for paging.
        found.sort(key=lambda hit: (not hit[0].is_folder, -hit[1], hit[0].name.lower(), hit[0].id))
        chunk = found[page * limit : (page + 1) * limit]
        return {
            "entities": [self._entity(e) for e, _ in chunk],
            "page": {
                "totalCount": len(found),
                "totalPages": math.ceil(len(found) / limit),
                "pageOffset": page,
                "pageSize": len(chunk),
            },
            "status": dict(SUCCESS),
        }

    def taxonomy(self, **query: Any) -> dict[str, Any]:
        self._schema(query)
        namespace = self._namespace(query)
        ident = query.get("entityId")
        if not ident:
            raise BadRequest("query parameter 'entityId': required, the id of a folder or an audience.")
        index = self.index()
        by_id = {(e.id, e.is_folder): e for e in index.entries if e.namespace == namespace}
        entry = by_id.get((ident, False)) or by_id.get((ident, True))
        if entry is None:
            raise ApiError(
                404, f"Cannot find entityId {ident} in namespace {namespace}.", code=NOT_FOUND_CODE
            )
        path: list[Entry] = []
        parent, seen = entry.folder_id, set()
        while parent != ROOT and parent not in seen:
            seen.add(parent)
            folder = by_id.get((parent, True))
            if folder is None:
                break
            path.append(folder)
            parent = folder.folder_id
        taxonomy = [
            {"id": f.id, "base64EncodedSourceId": _encoded(f), "name": f.name, "parentFolderId": f.folder_id}
            for f in reversed(path)
        ]
        return {"taxonomy": taxonomy, "status": dict(SUCCESS)}

    # --- the index -------------------------------------------------------------------------------------------------
    def index(self) -> SearchIndex:
        return SandboxIndex(self.ctx.catalog, self.ctx.org_id, self.ctx.sandbox).current()

    # --- helpers ---------------------------------------------------------------------------------------------------
    def _matches(self, index: SearchIndex, s: Any) -> list[tuple[Entry, float]]:
        if s is not None and not isinstance(s, str):
            raise BadRequest("query parameter 's': expected a Lucene query string.")
        try:
            return index.search(lucene.parse(s or ""))
        except lucene.QueryError as exc:
            raise BadRequest(f"query parameter 's': {exc}.") from None

    @staticmethod
    def _schema(query: dict[str, Any], also: str | None = None) -> None:
        value = query.get("schema.name") or (query.get(also) if also else None)
        if value != SCHEMA_NAME:
            got = "missing" if value is None else f"'{str(value)[:80]}'"
            names = "'schema.name'" + (f" (or '{also}')" if also else "")
            raise BadRequest(f"query parameter {names}: required, '{SCHEMA_NAME}' (got {got}).")

    @staticmethod
    def _namespace(query: dict[str, Any]) -> str:
        value = query.get("namespace")
        if not isinstance(value, str) or not value:
            raise BadRequest(
                "query parameter 'namespace': required, e.g. 'AEPSegments' (see /search/namespaces)."
            )
        return value

    @staticmethod
    def _namespaces(index: SearchIndex) -> set[str]:
        return {DEFAULT_NAMESPACE} | {e.namespace for e in index.entries}

    @staticmethod
    def _entity(entry: Entry) -> dict[str, Any]:
        return {
            "id": entry.id,
            "base64EncodedSourceId": _encoded(entry),
            "sourceId": _source_id(entry),
            "isFolder": entry.is_folder,
            "parentFolderId": entry.folder_id,
            "name": entry.name,
            "description": entry.description,
            # Extension: the folder path of the entity (what folderLocation searches).
            "folderLocation": entry.folder_location,
        }


class SandboxIndex:
    """The index of one sandbox of one catalog, kept in this process (``_cache``) and brought up to date with the
    catalog on demand (:meth:`current`): by every search, and right after a commit that touched the sandbox's
    folders or audiences (:func:`_after_commit`), so the first search after a change usually finds it current."""

    def __init__(self, catalog, org_id: str, sandbox: str):
        self.catalog, self.org_id, self.sandbox = catalog, org_id, sandbox
        _catalogs[id(catalog.engine)] = catalog

    def current(self) -> SearchIndex:
        """This sandbox's index, brought up to date with the catalog first (only what changed is re-indexed)."""
        key = (self.catalog.url, self.org_id, self.sandbox)
        with self.catalog.session(readonly=True) as session:
            fingerprint = self._fingerprint(session)
            cached = _cache.get(key)
            if cached is not None and cached.fingerprint == fingerprint:
                return cached.index
            with _lock:
                cached = _cache.get(key)
                if cached is None:
                    cached = _cache[key] = _Indexed()
                if cached.fingerprint != fingerprint:
                    self._catch_up(session, cached, fingerprint)
                return cached.index

    def _fingerprint(self, session) -> tuple:
        out: list[Any] = []
        for model in (models.Folder, models.Audience):
            query = select(func.count(), func.max(model.updated_ms), func.sum(model.updated_ms)).where(
                model.org_id == self.org_id, model.sandbox == self.sandbox
            )
            out.extend(session.execute(query).one())
        return tuple(out)

    def _catch_up(self, session, state: _Indexed, fingerprint: tuple) -> None:
        """Apply the catalog's changes since ``state`` was current: the audiences updated since its newest update
        (a small query), the ids gone (read only when the counts say something was deleted or missed), and, when
        folders changed, the folders and the locations of whatever they hold."""
        folders_changed = state.fingerprint is None or state.fingerprint[:3] != fingerprint[:3]
        if folders_changed:
            m = models.Folder
            folders = session.scalars(select(m).where(m.org_id == self.org_id, m.sandbox == self.sandbox))
            state.folders = {f.id: f for f in folders}
        where = (models.Audience.org_id == self.org_id, models.Audience.sandbox == self.sandbox)
        since = state.audience_updated_ms.values()
        newest = max(since) if since else None
        rows = self._audience_rows(
            session, *where, *(() if newest is None else (models.Audience.updated_ms >= newest,))
        )
        changed = {r[0]: r for r in rows}
        count, _, total = fingerprint[3:]
        stamps = {**state.audience_updated_ms, **{i: r[-1] for i, r in changed.items()}}
        gone: list[str] = []
        if len(stamps) != (count or 0) or sum(stamps.values()) != (total or 0):
            # Deleted rows, or rows written with an older update time than the newest seen (another process's
            # clock): compare every (id, updated_ms) and fetch what differs.
            live = dict(
                session.execute(select(models.Audience.id, models.Audience.updated_ms).where(*where)).all()
            )
            gone = [i for i in stamps if i not in live]
            missed = [i for i, ms in live.items() if stamps.get(i) != ms and i not in changed]
            for chunk in range(0, len(missed), 500):
                ids = missed[chunk : chunk + 500]
                changed.update(
                    {r[0]: r for r in self._audience_rows(session, *where, models.Audience.id.in_(ids))}
                )
            stamps = {
                i: ms for i, ms in {**stamps, **{i: r[-1] for i, r in changed.items()}}.items() if i in live
            }
        location = _locations(state.folders)
        upserts = [self._audience_entry(r, location) for r in changed.values()]
        if folders_changed:
            current = {i for i in stamps}
            upserts += [self._folder_entry(f, location) for f in state.folders.values()]
            upserts += [
                replace(e, folder_location=location(e.folder_id))
                for e in state.index.entries
                if not e.is_folder
                and e.id in current
                and e.id not in changed
                and e.folder_location != location(e.folder_id)
            ]
            gone_folders = [e.id for e in state.index.entries if e.is_folder and e.id not in state.folders]
        else:
            gone_folders = []
        state.index.apply(upserts, [(i, False) for i in gone] + [(i, True) for i in gone_folders])
        state.audience_updated_ms = stamps
        state.fingerprint = fingerprint

    @staticmethod
    def _audience_rows(session, *where: Any) -> list[tuple]:
        # Only the fields searched, extracted by the database (an audience document is large: it carries the
        # definition; loading 4,000 of them as JSON costs a second, these columns a few ms).
        m = models.Audience
        query = select(
            m.id,
            m.name,
            m.body["namespace"].as_string(),
            m.body["description"].as_string(),
            m.body["folderId"].as_string(),
            m.updated_ms,
        ).where(*where)
        return list(session.execute(query.order_by(m.id)))

    @staticmethod
    def _audience_entry(row: tuple, location) -> Entry:
        ident, name, namespace, description, folder_id, _ = row
        folder_id = folder_id or ROOT
        return Entry(
            id=ident,
            namespace=namespace or DEFAULT_NAMESPACE,
            is_folder=False,
            name=name or "",
            description=description or "",
            folder_id=folder_id,
            folder_location=location(folder_id),
        )

    @staticmethod
    def _folder_entry(folder: models.Folder, location) -> Entry:
        return Entry(
            id=folder.id,
            namespace=folder.namespace,
            is_folder=True,
            name=folder.name,
            description=(folder.body or {}).get("description") or "",
            folder_id=folder.parent_folder_id,
            folder_location=location(folder.parent_folder_id),
        )


# --- keeping indexes current on commit -------------------------------------------------------------------------------
# A commit in this process that touched a sandbox's folders or audiences (a definition, audience or folder written by
# the API or the client) brings that sandbox's index up to date at once, if this process has one: the first search
# afterwards then only reads the fingerprint. Changes made by other processes are caught up by the next search.
_catalogs: dict[int, Any] = {}  # id(engine) -> the catalog whose sandboxes have indexes here
_TOUCHED = "segmentation_pipelines.search.touched"


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _flush_context) -> None:
    touched = session.info.setdefault(_TOUCHED, set())
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, models.Audience | models.Folder):
            touched.add((obj.org_id, obj.sandbox))


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_TOUCHED, None)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    touched = session.info.pop(_TOUCHED, None)
    bind = session.bind
    catalog = _catalogs.get(id(getattr(bind, "engine", bind))) if touched else None
    if catalog is None:
        return
    for org_id, sandbox in touched:
        if (catalog.url, org_id, sandbox) in _cache:
            try:
                SandboxIndex(catalog, org_id, sandbox).current()
            except Exception:  # the write stands; the next search catches up
                log.exception("search index of %s/%s: catching up after a commit failed", org_id, sandbox)
