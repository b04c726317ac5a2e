"""Folders (``/folders``, an extension: the contract's search walks folders but documents no folder API).

A folder has a ``name``, a ``parentFolderId`` (``root`` at the top) and a ``namespace`` (the search namespace
whose entities it holds; default ``AEPSegments``, the namespace of segment definitions). Segment definitions and
audiences are filed in a folder with their ``folderId`` property (:func:`check_folder_id`). Names are unique among
siblings (case-insensitively); a folder cannot be moved under itself, and only an empty folder can be deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func

from segmentation_pipelines.catalog import models
from segmentation_pipelines.errors import ApiError, BadRequest, Conflict, NotFound
from segmentation_pipelines.service.context import ServiceContext

ROOT = "root"
DEFAULT_NAMESPACE = "AEPSegments"
PATCH_PATHS = ("/name", "/description", "/parentFolderId")


def check_folder_id(ctx: ServiceContext, session, value: Any, namespace: str, field: str = "folderId") -> str:
    """The folder id an entity of ``namespace`` is filed in (``root`` when none), or a 400 naming the field."""
    if value is None or value == ROOT:
        return ROOT
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"field '{field}': expected a folder id (a string; 'root' for the top level).")
    row = ctx.repo(session, models.Folder).get(value.strip())
    if row is None:
        raise BadRequest(
            f"field '{field}': no folder '{value}' in this sandbox (create it with POST /folders)."
        )
    if row.namespace != namespace:
        raise BadRequest(
            f"field '{field}': folder '{row.name}' ({row.id}) holds {row.namespace} entities, not {namespace}."
        )
    return row.id


class FoldersService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def create(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise BadRequest('body: expected {"name": ..., "parentFolderId": ..., "namespace": ...}.')
        name = self._name(body.get("name"))
        namespace = body.get("namespace") or DEFAULT_NAMESPACE
        if not isinstance(namespace, str):
            raise BadRequest("field 'namespace': expected a string such as 'AEPSegments'.")
        description = self._description(body.get("description"))
        with self.ctx.catalog.session() as session:
            parent = check_folder_id(
                self.ctx, session, body.get("parentFolderId"), namespace, "parentFolderId"
            )
            self._ensure_name_free(session, name, parent, namespace, None)
            row = self.ctx.repo(session, models.Folder).add(
                name=name,
                namespace=namespace,
                parent_folder_id=parent,
                body={"description": description},
            )
            return self._doc(row)

    def get(self, id: str) -> dict[str, Any]:  # noqa: A002 - the API's name
        with self.ctx.catalog.session(readonly=True) as session:
            return self._doc(self._row(session, id))

    def list(self, **query: Any) -> dict[str, Any]:
        m = models.Folder
        where = []
        for key, column in (("namespace", m.namespace), ("parentFolderId", m.parent_folder_id)):
            if query.get(key):
                where.append(column == query[key])
        with self.ctx.catalog.session(readonly=True) as session:
            rows = self.ctx.repo(session, m).find(*where, order_by=[func.lower(m.name)])
            children = [self._doc(r) for r in rows]
        return {"_page": {"totalCount": len(children), "pageSize": len(children)}, "children": children}

    def update(self, id: str, patch_ops: Any) -> dict[str, Any]:  # noqa: A002
        """JSON Patch (``add``/``replace``) on ``/name``, ``/description``, ``/parentFolderId`` (all or nothing)."""
        if not isinstance(patch_ops, list) or not patch_ops:
            raise BadRequest(
                'body: expected a JSON Patch array such as [{"op": "replace", "path": "/name", ...}].'
            )
        changes: dict[str, Any] = {}
        for i, item in enumerate(patch_ops):
            if not isinstance(item, Mapping) or item.get("op") not in ("add", "replace"):
                raise BadRequest(f"body[{i}].op: must be 'add' or 'replace'.")
            if item.get("path") not in PATCH_PATHS:
                raise BadRequest(
                    f"body[{i}].path: must be one of {', '.join(PATCH_PATHS)} (got {item.get('path')!r})."
                )
            if "value" not in item:
                raise BadRequest(f"body[{i}].value: required.")
            changes[item["path"]] = item["value"]
        with self.ctx.catalog.session() as session:
            row = self._row(session, id, for_update=True)
            name = self._name(changes.get("/name", row.name))
            parent = row.parent_folder_id
            if "/parentFolderId" in changes:
                parent = check_folder_id(
                    self.ctx, session, changes["/parentFolderId"], row.namespace, "parentFolderId"
                )
                if id in self._ancestors(session, parent):  # the new parent is the folder or inside it
                    raise BadRequest(
                        f"field 'parentFolderId': folder '{row.name}' cannot be moved into itself."
                    )
            self._ensure_name_free(session, name, parent, row.namespace, id)
            body = dict(row.body)
            if "/description" in changes:
                body["description"] = self._description(changes["/description"])
            self.ctx.repo(session, models.Folder).update(row, name=name, parent_folder_id=parent, body=body)
            return self._doc(row)

    def delete(self, id: str) -> None:  # noqa: A002
        with self.ctx.catalog.session() as session:
            row = self._row(session, id, for_update=True)
            sub = self.ctx.repo(session, models.Folder).find(models.Folder.parent_folder_id == id, limit=3)
            filed = [
                a
                for a in self.ctx.repo(session, models.Audience).find()
                if (a.body or {}).get("folderId") == id
            ]
            if sub or filed:
                names = ", ".join(
                    [f"folder '{f.name}'" for f in sub] + [f"audience '{a.name}'" for a in filed[:3]]
                )
                raise ApiError(
                    400,
                    f"Folder '{row.name}' ({id}) is not empty ({names}); move or delete what it holds first.",
                    code="UPAPI-113631-403",
                    title="The folder cannot be deleted.",
                )
            self.ctx.repo(session, models.Folder).delete(row)
        return None

    # --- helpers ---------------------------------------------------------------------------------------------------
    def _row(self, session, ident: str, for_update: bool = False) -> models.Folder:
        row = self.ctx.repo(session, models.Folder).get(ident, for_update=for_update)
        if row is None:
            raise NotFound("Folder", ident)
        return row

    def _ancestors(self, session, folder_id: str) -> set[str]:
        seen: set[str] = set()
        repo = self.ctx.repo(session, models.Folder)
        while folder_id != ROOT and folder_id not in seen:
            seen.add(folder_id)
            row = repo.get(folder_id)
            folder_id = row.parent_folder_id if row is not None else ROOT
        return seen

    @staticmethod
    def _name(value: Any) -> str:
        if not isinstance(value, str) or not value.strip() or len(value) > 255:
            raise BadRequest("field 'name': required, a non-empty string of at most 255 characters.")
        if "/" in value:
            raise BadRequest("field 'name': a folder name cannot contain '/' (it separates folderLocation).")
        return value.strip()

    @staticmethod
    def _description(value: Any) -> str:
        if value is not None and not isinstance(value, str):
            raise BadRequest("field 'description': must be a string.")
        return value or ""

    def _ensure_name_free(self, session, name: str, parent: str, namespace: str, ident: str | None) -> None:
        m = models.Folder
        clash = self.ctx.repo(session, m).find(
            func.lower(m.name) == name.lower(), m.parent_folder_id == parent, m.namespace == namespace
        )
        if any(r.id != ident for r in clash):
            raise Conflict(f"A folder named '{name}' already exists in folder '{parent}' of {namespace}.")

    def _doc(self, row: models.Folder) -> dict[str, Any]:
        return {
            "id": row.id,
            "imsOrgId": row.org_id,
            "sandbox": self.ctx.sandbox_doc(),
            "name": row.name,
            "description": (row.body or {}).get("description", ""),
            "namespace": row.namespace,
            "parentFolderId": row.parent_folder_id,
            "creationTime": row.created_ms,
            "updateTime": row.updated_ms,
        }
