"""Segment definitions (``/segment/definitions``, ``/segment/conversion``): PQL rules, checked on write.

Every definition is also an audience (``type: SegmentDefinition``, same id): the ``audiences`` row is written in
the same transaction, and carries the definition's ``inSegment`` references as ``dependencies`` (the audience ids
it reads). Names are unique per sandbox (case-insensitively). A write that would close a cycle of ``inSegment``
references is refused, as is deleting a definition another audience still references. After every write the
Dagster code location is asked to reload (segments are assets, ``architecture.md`` §5).
"""

from __future__ import annotations

import builtins
import copy
import logging
import shutil
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.exc import IntegrityError

from segmentation_pipelines import code_location
from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.catalog.repository import new_id
from segmentation_pipelines.engine import memberships
from segmentation_pipelines.errors import ApiError, BadRequest, NotFound
from segmentation_pipelines.launcher import asset_key_string, definition_asset_key, segment_asset_key
from segmentation_pipelines.pql.references import find_cycle
from segmentation_pipelines.profiles.layout import StoreLayout
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.query import (
    MAX_INT,
    bulk_results,
    json_path_get,
    page_info,
    parse_bool,
    parse_bulk_ids,
    parse_int,
    parse_sort,
    property_filters,
    sort_docs,
    sort_text,
    values_of,
)
from segmentation_pipelines.service.segment_definition_fields import (
    EVALUATION_METHODS,
    storable,
    validated_expression,
    validated_fields,
)
from segmentation_pipelines.service.segment_pql import CheckedExpression, SegmentPql

log = logging.getLogger(__name__)

SORT_FIELDS = {"creationTime": "creationTime", "updateTime": "updateTime", "name": "name", "id": "id"}
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
NAME_TAKEN_CODE = "SEGP-100422-422"
CANNOT_DELETE_CODE = "UPAPI-113631-403"
INVALID_PQL_CODE = "UPAPI-113434-400"
TYPE_SEGMENT_DEFINITION = "SegmentDefinition"

# Audience fields every Platform audience carries besides the definition's own.
_DEFINED_ON = [
    {
        "meta:resourceType": "unions",
        "meta:containerId": "tenant",
        "$ref": "https://ns.adobe.com/xdm/context/profile__union",
    }
]


def _epoch_s(ms: int) -> int:
    return int(ms // 1000)


def drop_memberships(ctx: ServiceContext, session, audience_id: str) -> None:
    """Delete an audience's ``audience_evaluations`` rows (in the caller's transaction)."""
    session.execute(
        delete(models.AudienceEvaluation).where(
            models.AudienceEvaluation.org_id == ctx.org_id,
            models.AudienceEvaluation.sandbox == ctx.sandbox,
            models.AudienceEvaluation.audience_id == audience_id,
        )
    )


def remove_membership_files(ctx: ServiceContext, audience_id: str) -> None:
    """Remove a deleted audience's membership files (after the rows that published them are gone)."""
    folder = StoreLayout(ctx.sandbox_root).memberships_dir() / memberships.safe_name(audience_id)
    shutil.rmtree(folder, ignore_errors=True)


class SegmentDefinitionsService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.pql = SegmentPql(ctx)

    # --- reads -----------------------------------------------------------------------------------------------------
    def get(self, id: str) -> dict[str, Any]:
        with self.ctx.catalog.session(readonly=True) as session:
            row = self.ctx.repo(session, models.SegmentDefinition).get(id)
            if row is None:
                raise NotFound("Segment definition", id)
            return copy.deepcopy(row.body)

    def all(self) -> list[dict[str, Any]]:
        """Every definition of the sandbox (documents)."""
        with self.ctx.catalog.session(readonly=True) as session:
            return [copy.deepcopy(r.body) for r in self.ctx.repo(session, models.SegmentDefinition).find()]

    def list(self, **query: Any) -> dict[str, Any]:
        limit = parse_int(query.pop("limit", None), "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        page = parse_int(query.pop("page", None), "page", 0, maximum=MAX_INT // limit)
        start_raw = query.pop("start", None)
        start = parse_int(start_raw, "start", page * limit)
        sort_raw = query.pop("sort", None)
        order = parse_sort(sort_raw, SORT_FIELDS)
        properties = property_filters(query.pop("property", None))
        methods: list[tuple[str, bool]] = []
        contains: list[tuple[str, str]] = []
        for key in list(query):
            parts = key.split(".")
            if len(parts) == 3 and parts[0] == "evaluationInfo" and parts[2] == "enabled":
                if parts[1] not in EVALUATION_METHODS:
                    raise BadRequest(
                        f"query parameter '{key}': unknown evaluation method '{parts[1]}' "
                        f"(use {', '.join(EVALUATION_METHODS)})."
                    )
                methods.append((parts[1], parse_bool(values_of(query.pop(key))[-1], key)))
            elif key in ("name", "description"):
                # Case-insensitive substring, as on /audiences.
                contains.append((key, values_of(query.pop(key))[-1].lower()))

        def keep(doc: dict[str, Any]) -> bool:
            for method, enabled in methods:
                if bool(json_path_get(doc, f"evaluationInfo.{method}.enabled")) != enabled:
                    return False
            for field_name, needle in contains:
                if needle not in str(doc.get(field_name) or "").lower():
                    return False
            return all(test(doc) for test in properties)

        docs = sort_docs([d for d in self.all() if keep(d)], order)
        total = len(docs)
        page_docs = docs[start : start + limit]
        result: dict[str, Any] = {
            "segments": page_docs,
            "page": page_info(total, len(page_docs), limit, order),
            "link": {},
        }
        if start + limit < total:
            sort_param = sort_raw if isinstance(sort_raw, str) else sort_text(order)
            result["link"]["next"] = (
                f"/segment/definitions?start={start + limit}&limit={limit}&sort={sort_param}"
            )
        return result

    def bulk_get(self, body: Any) -> dict[str, Any]:
        ids = parse_bulk_ids(body)
        with self.ctx.catalog.session(readonly=True) as session:
            repo = self.ctx.repo(session, models.SegmentDefinition)
            found = {i: copy.deepcopy(row.body) for i in ids if (row := repo.get(i)) is not None}
        return bulk_results(ids, found, "Segment definition", self.ctx.request_id)

    # --- writes ----------------------------------------------------------------------------------------------------
    def create(
        self, body: Any, *, id: str | None = None, audience_fields: Mapping[str, Any] | None = None
    ) -> dict:
        """Create a definition (and its audience). ``audience_fields``: extra audience attributes (labels, ...)."""
        fields = validated_fields(self.ctx, body)
        ident = id or new_id()
        checked = self.pql.check(fields["expression"], self_id=ident)
        key = segment_asset_key(ident, fields["name"])
        doc = self._document(ident, fields, checked, created_ms=None, asset_key=key)
        storable(doc)
        try:
            with self.ctx.catalog.session() as session:
                self._ensure_name_free(session, doc["name"], ident)
                self._ensure_no_cycle(session, ident, checked.references)
                repo = self.ctx.repo(session, models.SegmentDefinition)
                repo.add(
                    id=ident,
                    name=doc["name"],
                    batch_enabled=bool(doc["evaluationInfo"]["batch"]["enabled"]),
                    body=doc,
                    created_ms=doc["creationTime"],
                    updated_ms=doc["updateTime"],
                )
                self._write_audience(session, doc, checked.references, audience_fields, existing=None)
        except IntegrityError:
            raise self._name_taken(doc["name"]) from None
        code_location.request_reload(self.ctx.settings)
        return copy.deepcopy(doc)

    def update(
        self, id: str, body: Any, *, audience_fields: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """PATCH = full overwrite (the contract): fields left out take their defaults again."""
        fields = validated_fields(self.ctx, body)
        checked = self.pql.check(fields["expression"], self_id=id)
        try:
            with self.ctx.catalog.session() as session:
                repo = self.ctx.repo(session, models.SegmentDefinition)
                row = repo.get(id, for_update=True)
                if row is None:
                    raise NotFound("Segment definition", id)
                # The asset key stays what it was (a rename does not move the asset: launcher.py).
                doc = self._document(
                    id,
                    fields,
                    checked,
                    created_ms=row.body.get("creationTime", row.created_ms),
                    asset_key=definition_asset_key(row.body),
                )
                storable(doc)
                self._ensure_name_free(session, doc["name"], id)
                self._ensure_no_cycle(session, id, checked.references)
                repo.update(
                    row,
                    name=doc["name"],
                    batch_enabled=bool(doc["evaluationInfo"]["batch"]["enabled"]),
                    body=doc,
                    updated_ms=doc["updateTime"],
                )
                audience = self.ctx.repo(session, models.Audience).get(id, for_update=True)
                self._write_audience(session, doc, checked.references, audience_fields, existing=audience)
        except IntegrityError:
            raise self._name_taken(fields["name"]) from None
        code_location.request_reload(self.ctx.settings)
        return copy.deepcopy(doc)

    def delete(self, id: str) -> dict[str, Any]:
        with self.ctx.catalog.session() as session:
            repo = self.ctx.repo(session, models.SegmentDefinition)
            row = repo.get(id, for_update=True)
            if row is None:
                raise NotFound("Segment definition", id)
            dependents = self.dependents_of(session, id)
            if dependents:
                names = ", ".join(f"'{d['name']}' ({d['id']})" for d in dependents)
                raise ApiError(
                    400,
                    f"The segment definition '{row.name}' ({id}) cannot be deleted: it is referenced through "
                    f"inSegment by {names}. Change or delete those first.",
                    code=CANNOT_DELETE_CODE,
                    title="The audience cannot be deleted.",
                )
            audience = self.ctx.repo(session, models.Audience).get(id)
            if audience is not None:
                self.ctx.repo(session, models.Audience).delete(audience)
            repo.delete(row)
            drop_memberships(self.ctx, session, id)
        remove_membership_files(self.ctx, id)
        code_location.request_reload(self.ctx.settings)
        return {"status": True, "message": f"Segment definition '{id}' has been deleted."}

    def convert(self, body: Any) -> dict[str, Any]:
        """``pql/text`` <-> ``pql/json``: the same definition with its expression re-encoded (parsed, not checked)."""
        if not isinstance(body, Mapping):
            raise BadRequest("body: expected a segment definition object.")
        expression = validated_expression(body.get("expression"))
        target = "pql/json" if expression["format"] == "pql/text" else "pql/text"
        out = copy.deepcopy(dict(body))
        out["expression"] = {**expression, "format": target, "value": self.pql.convert(expression, target)}
        return out

    # --- used by other services ------------------------------------------------------------------------------------
    def dependents_of(self, session, audience_id: str) -> list[dict[str, Any]]:
        """Audiences (of this sandbox) whose definitions reference ``audience_id`` through inSegment."""
        rows = self.ctx.repo(session, models.Audience).find(models.Audience.type == TYPE_SEGMENT_DEFINITION)
        return [
            {"id": r.id, "name": r.name}
            for r in rows
            if r.id != audience_id and audience_id in (r.body.get("dependencies") or [])
        ]

    # --- helpers ---------------------------------------------------------------------------------------------------
    def _document(
        self,
        ident: str,
        fields: dict[str, Any],
        checked: CheckedExpression,
        created_ms: int | None,
        asset_key: list[str],
    ) -> dict[str, Any]:
        now = now_ms()
        created = now if created_ms is None else int(created_ms)
        doc: dict[str, Any] = {
            "id": ident,
            "imsOrgId": self.ctx.org_id,
            "sandbox": self.ctx.sandbox_doc(),
            "name": fields["name"],
            "description": fields["description"],
            "expression": fields["expression"],
            "schema": fields["schema"],
            "evaluationInfo": fields["evaluationInfo"],
            "mergePolicyId": fields["mergePolicyId"],
            "profileInstanceId": fields["profileInstanceId"],
            "dataGovernancePolicy": fields["dataGovernancePolicy"],
            "lifecycleState": fields["lifecycleState"],
            "creationTime": created,
            "createEpoch": _epoch_s(created),
            "updateTime": now,
            "updateEpoch": _epoch_s(now),
            # Extension (read-only): the Dagster asset of this definition, kept across renames.
            "dagster": {"assetKey": asset_key_string(asset_key)},
        }
        if fields.get("payloadSchema") is not None:
            doc["payloadSchema"] = fields["payloadSchema"]
        if fields.get("folderId", "root") != "root":
            doc["folderId"] = fields["folderId"]
        return doc

    def _ensure_name_free(self, session, name: str, ident: str) -> None:
        repo = self.ctx.repo(session, models.SegmentDefinition)
        clash = repo.find(
            func.lower(models.SegmentDefinition.name) == name.lower(), models.SegmentDefinition.id != ident
        )
        if clash:
            raise self._name_taken(name, clash[0].id)

    @staticmethod
    def _name_taken(name: str, other: str | None = None) -> ApiError:
        which = f" ({other})" if other else ""
        return ApiError(
            422,
            f"A segment definition named '{name}'{which} already exists in this sandbox; names are unique "
            "(case-insensitively). To change it, use PATCH /segment/definitions/{id}.",
            code=NAME_TAKEN_CODE,
            title="Already exists",
        )

    def _ensure_no_cycle(self, session, ident: str, references: builtins.list[str]) -> None:
        # Walks only what the new references reach, one definition at a time: reading every definition's body
        # made each create O(definitions) (0.25 s each at 4,000). No reference: no edge out, so no cycle.
        repo = self.ctx.repo(session, models.Audience)
        names: dict[str, str] = {}

        def dependencies(node: str) -> builtins.list[str]:
            row = repo.get(node)
            if row is None or row.type != TYPE_SEGMENT_DEFINITION:
                return []
            names[node] = row.name
            return builtins.list(row.body.get("dependencies") or [])

        cycle = find_cycle(ident, references, dependencies) if references else None
        if cycle:
            path = " -> ".join(f"'{names.get(n, n)}'" if n != ident else "this definition" for n in cycle)
            raise ApiError(
                400,
                f"field 'expression.value': inSegment references form a cycle ({path}); a definition cannot "
                "depend on itself.",
                code=INVALID_PQL_CODE,
            )

    def _write_audience(
        self,
        session,
        doc: dict[str, Any],
        references: builtins.list[str],
        audience_fields: Mapping[str, Any] | None,
        existing: models.Audience | None,
    ) -> None:
        extra = dict(audience_fields or {})
        previous = existing.body if existing is not None else {}
        audience = {
            **doc,
            "audienceId": doc["id"],
            "type": TYPE_SEGMENT_DEFINITION,
            "namespace": "AEPSegments",
            "originName": "REAL_TIME_CUSTOMER_PROFILE",
            "isSystem": False,
            "saveSegmentMembership": True,
            "overridePerformanceWarnings": bool(extra.get("overridePerformanceWarnings", False)),
            "definedOn": _DEFINED_ON,
            "labels": builtins.list(extra.get("labels", previous.get("labels", []))),
            "createdBy": previous.get("createdBy", self.ctx.user),
            "lastModifiedBy": self.ctx.user,
            "dependencies": builtins.list(references),
            "_etag": f'"{new_id()}"',
        }
        storable(audience)  # the audience view is listed too (labels and other audience fields are free-form)
        repo = self.ctx.repo(session, models.Audience)
        if existing is None:
            repo.add(
                id=doc["id"],
                name=doc["name"],
                audience_id=doc["id"],
                type=TYPE_SEGMENT_DEFINITION,
                body=audience,
                created_ms=doc["creationTime"],
                updated_ms=doc["updateTime"],
            )
        else:
            repo.update(existing, name=doc["name"], body=audience, updated_ms=doc["updateTime"])


def catalog_snapshot(catalog) -> builtins.list[dict[str, Any]]:
    """Every segment definition of every sandbox, as the Dagster code location pins it (small, JSON-able).

    Each entry: ``id``, ``org_id``, ``sandbox``, ``name``, ``assetKey`` (parts), ``description``, ``expression``, ``mergePolicyId``,
    ``evaluationInfo``, ``dependencies`` (referenced audience ids), ``updateTime``.
    """
    out: builtins.list[dict[str, Any]] = []
    with catalog.session(readonly=True) as session:
        audiences = {
            (a.org_id, a.sandbox, a.id): a.body
            for a in session.query(models.Audience).filter(models.Audience.type == TYPE_SEGMENT_DEFINITION)
        }
        for row in session.query(models.SegmentDefinition).order_by(models.SegmentDefinition.id):
            body = row.body
            audience = audiences.get((row.org_id, row.sandbox, row.id), {})
            out.append(
                {
                    "id": row.id,
                    "org_id": row.org_id,
                    "sandbox": row.sandbox,
                    "name": body.get("name", row.name),
                    "assetKey": definition_asset_key({**body, "id": row.id}),
                    "description": body.get("description") or "",
                    "expression": body.get("expression"),
                    "mergePolicyId": body.get("mergePolicyId"),
                    "evaluationInfo": body.get("evaluationInfo"),
                    "lifecycleState": body.get("lifecycleState"),
                    "dependencies": builtins.list(audience.get("dependencies") or []),
                    "updateTime": body.get("updateTime", row.updated_ms),
                }
            )
    return out
