"""Merge policies (``/config/mergePolicies`` of the Real-Time Customer Profile API): how the fragments of a person
are merged. Two attribute-merge types: ``timestampOrdered`` and ``dataSetPrecedence`` (``profiles/merge.py``).

Every sandbox has a default policy (timestamp-ordered), created on first use with an id derived from the org and
sandbox, so concurrent first uses agree on it. Each policy is a ``merged_profiles`` asset in Dagster; creating or
deleting one asks the code location to reload.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError

from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.code_location import request_reload
from segmentation_pipelines.errors import BadRequest, Conflict, NotFound
from segmentation_pipelines.profiles.merge import (
    DATASET_PRECEDENCE,
    TIMESTAMP_ORDERED,
    validate_attribute_merge,
)
from segmentation_pipelines.profiles.xdm import PROFILE_CLASS
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.query import int_param

DEFAULT_NAME = "Default timestamp-ordered"


def _page(query: dict, default: int = 100) -> tuple[int, int]:
    return int_param(query, "start", 0), int_param(query, "limit", default, minimum=1, maximum=1000)


class MergePoliciesService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    # ------------------------------------------------------------ helpers
    def default_id(self) -> str:
        return str(
            uuid.uuid5(
                uuid.NAMESPACE_URL, f"segmentation-pipelines:{self.ctx.org_id}/{self.ctx.sandbox}/default"
            )
        )

    def _doc(self, policy_id: str, body: dict, created: int, updated: int, version: int = 1) -> dict:
        return {
            "id": policy_id,
            "name": body["name"],
            "imsOrgId": self.ctx.org_id,
            "sandbox": self.ctx.sandbox_doc(),
            "schema": {"name": PROFILE_CLASS},
            "version": version,
            "identityGraph": {"type": "pdg"},
            "attributeMerge": body["attributeMerge"],
            "default": bool(body.get("default", False)),
            "activeOnEdge": bool(body.get("activeOnEdge", False)),
            "createEpoch": created // 1000,
            "updateEpoch": updated // 1000,
        }

    def ensure_default(self) -> dict:
        """The sandbox's default policy, created when the sandbox has none."""
        with self.ctx.catalog.session() as s:
            repo = self.ctx.repo(s, models.MergePolicy)
            row = repo.find(models.MergePolicy.is_default.is_(True), limit=1)
            if row:
                return row[0].body
            if repo.count() and (any_row := repo.find(order_by=[models.MergePolicy.created_ms], limit=1)):
                return any_row[0].body
        now = now_ms()
        body = {"name": DEFAULT_NAME, "attributeMerge": {"type": TIMESTAMP_ORDERED}, "default": True}
        doc = self._doc(self.default_id(), body, now, now)
        try:
            with self.ctx.catalog.session() as s:
                self.ctx.repo(s, models.MergePolicy).add(
                    id=doc["id"], name=doc["name"], is_default=True, body=doc, created_ms=now, updated_ms=now
                )
            self._reload()
        except IntegrityError:
            pass  # another process created it first
        return self.get(doc["id"])

    def _validate(self, body: Any, partial: dict | None = None) -> dict:
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        merged = {**(partial or {}), **body}
        name = merged.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("name: a merge policy needs a non-empty name.")
        graph = (merged.get("identityGraph") or {"type": "pdg"}).get("type", "pdg")
        if graph != "pdg":
            raise BadRequest(
                f"identityGraph.type: only 'pdg' (private identity graph) is supported, not {graph!r}."
            )
        schema = (merged.get("schema") or {"name": PROFILE_CLASS}).get("name")
        if schema != PROFILE_CLASS:
            raise BadRequest(f"schema.name: merge policies apply to {PROFILE_CLASS}, not {schema!r}.")
        attribute_merge = validate_attribute_merge(merged.get("attributeMerge"))
        if attribute_merge["type"] == DATASET_PRECEDENCE:
            with self.ctx.catalog.session() as s:
                repo = self.ctx.repo(s, models.Dataset)
                for ds in attribute_merge["order"]:
                    if repo.get(ds) is None:
                        raise BadRequest(
                            f"attributeMerge.order: dataset '{ds}' does not exist in this sandbox."
                        )
        return {**merged, "name": name.strip(), "attributeMerge": attribute_merge}

    def _reload(self) -> None:

        request_reload(self.ctx.settings)

    def _unset_other_defaults(self, repo, keep: str) -> None:
        for row in repo.find(models.MergePolicy.is_default.is_(True)):
            if row.id != keep:
                repo.update(row, is_default=False, body={**row.body, "default": False})

    # ------------------------------------------------------------ API
    def list(self, **query) -> dict:
        self.ensure_default()
        start, limit = _page(query)
        with self.ctx.catalog.session() as s:
            repo = self.ctx.repo(s, models.MergePolicy)
            where = []
            if str(query.get("default", "")).lower() == "true":
                where.append(models.MergePolicy.is_default.is_(True))
            total = repo.count(*where)
            rows = repo.find(
                *where,
                order_by=[models.MergePolicy.created_ms, models.MergePolicy.id],
                offset=start,
                limit=limit,
            )
            children = [r.body for r in rows]
        return {
            "_page": {"totalCount": total, "pageSize": len(children), "start": start},
            "children": children,
            "_links": {"next": {"href": ""}},
        }

    def get(self, policy_id: str) -> dict:
        with self.ctx.catalog.session() as s:
            row = self.ctx.repo(s, models.MergePolicy).get(policy_id)
            if row is None:
                raise NotFound("Merge policy", policy_id)
            return row.body

    def resolve(self, policy_id: str | None) -> dict:
        """The policy ``policy_id``, or the sandbox default when None."""
        return self.get(policy_id) if policy_id else self.ensure_default()

    def create(self, body: Any) -> dict:
        self.ensure_default()
        clean = self._validate(body)
        now = now_ms()
        doc = self._doc(str(uuid.uuid4()), clean, now, now)
        with self.ctx.catalog.session() as s:
            repo = self.ctx.repo(s, models.MergePolicy)
            if doc["default"]:
                self._unset_other_defaults(repo, doc["id"])
            repo.add(
                id=doc["id"],
                name=doc["name"],
                is_default=doc["default"],
                body=doc,
                created_ms=now,
                updated_ms=now,
            )
        self._reload()
        return doc

    def update(self, policy_id: str, body: Any) -> dict:
        with self.ctx.catalog.session() as s:
            repo = self.ctx.repo(s, models.MergePolicy)
            row = repo.get(policy_id)
            if row is None:
                raise NotFound("Merge policy", policy_id)
            current = row.body
        if isinstance(body, dict) and "default" in body and not body["default"] and current.get("default"):
            raise Conflict("default: set another policy as the default instead of unsetting this one.")
        clean = self._validate(body, partial=current)
        with self.ctx.catalog.session() as s:
            repo = self.ctx.repo(s, models.MergePolicy)
            row = repo.get(policy_id)
            doc = self._doc(policy_id, clean, row.created_ms, now_ms(), int(current.get("version", 1)) + 1)
            if doc["default"]:
                self._unset_other_defaults(repo, policy_id)
            repo.update(row, name=doc["name"], is_default=doc["default"], body=doc)
        return doc

    def delete(self, policy_id: str) -> None:
        with self.ctx.catalog.session() as s:
            repo = self.ctx.repo(s, models.MergePolicy)
            row = repo.get(policy_id)
            if row is None:
                raise NotFound("Merge policy", policy_id)
            if row.is_default:
                raise Conflict(
                    "The default merge policy cannot be deleted; make another policy the default first."
                )
            repo.delete(row)
        self._reload()
        return None
