"""Segment search (``/search/namespaces``, ``/search/entities``, ``/search/taxonomy``) over one sandbox.

The searchable entities are the sandbox's folders and audiences (every segment definition is an audience,
namespace ``AEPSegments``; external audiences carry their own namespace, e.g. ``CustomerAudienceUpload``). The
query ``s`` is parsed by :mod:`segmentation_pipelines.search.lucene` and run on an in-memory tantivy index
(:mod:`segmentation_pipelines.search.index`), kept per sandbox in this process and rebuilt when the catalog's
folders or audiences changed: every search first reads a fingerprint (row count, largest and summed update time
of both tables), one small query, so a change made by any process (API, Dagster run, another worker) is seen by
the next search. See docs/decisions/search.md.
"""

from __future__ import annotations

import base64
import json
import math
import threading
from typing import Any

from sqlalchemy import func, select

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

_cache: dict[tuple[str, str, str], tuple[tuple, SearchIndex]] = {}
_lock = threading.Lock()


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
        """This sandbox's index, rebuilt if the catalog's folders or audiences changed since it was built."""
        key = (self.ctx.catalog.url, self.ctx.org_id, self.ctx.sandbox)
        with self.ctx.catalog.session(readonly=True) as session:
            fingerprint = self._fingerprint(session)
            cached = _cache.get(key)
            if cached is not None and cached[0] == fingerprint:
                return cached[1]
            with _lock:
                cached = _cache.get(key)
                if cached is not None and cached[0] == fingerprint:
                    return cached[1]
                index = SearchIndex(self._entries(session))
                _cache[key] = (fingerprint, index)
                return index

    def _fingerprint(self, session) -> tuple:
        out: list[Any] = []
        for model in (models.Folder, models.Audience):
            query = select(func.count(), func.max(model.updated_ms), func.sum(model.updated_ms)).where(
                model.org_id == self.ctx.org_id, model.sandbox == self.ctx.sandbox
            )
            out.extend(session.execute(query).one())
        return tuple(out)

    def _entries(self, session) -> list[Entry]:
        folders = self.ctx.repo(session, models.Folder).find()
        names = {f.id: (f.name, f.parent_folder_id) for f in folders}

        def location(folder_id: str) -> str:
            parts, seen = [], set()
            while folder_id in names and folder_id not in seen:
                seen.add(folder_id)
                name, folder_id = names[folder_id]
                parts.append(name)
            return "/".join(reversed(parts))

        entries = [
            Entry(
                id=f.id,
                namespace=f.namespace,
                is_folder=True,
                name=f.name,
                description=(f.body or {}).get("description") or "",
                folder_id=f.parent_folder_id,
                folder_location=location(f.parent_folder_id),
            )
            for f in folders
        ]
        # Only the fields searched, extracted by the database (an audience document is large: it carries the
        # definition; loading 4,000 of them as JSON costs a second, these columns a few ms).
        m = models.Audience
        query = select(
            m.id,
            m.name,
            m.body["namespace"].as_string(),
            m.body["description"].as_string(),
            m.body["folderId"].as_string(),
        ).where(m.org_id == self.ctx.org_id, m.sandbox == self.ctx.sandbox)
        for ident, name, namespace, description, folder_id in session.execute(query.order_by(m.id)):
            folder_id = folder_id or ROOT
            entries.append(
                Entry(
                    id=ident,
                    namespace=namespace or DEFAULT_NAMESPACE,
                    is_folder=False,
                    name=name or "",
                    description=description or "",
                    folder_id=folder_id,
                    folder_location=location(folder_id),
                )
            )
        return entries

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
