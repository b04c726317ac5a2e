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
import json
import logging
import math
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
from segmentation_pipelines.pql.limits import MAX_JSON_DEPTH, json_too_deep
from segmentation_pipelines.pql.references import find_cycle
from segmentation_pipelines.profiles.layout import StoreLayout
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.merge_policies import MergePoliciesService
from segmentation_pipelines.service.query import MAX_INT, parse_int
from segmentation_pipelines.service.segment_pql import CheckedExpression, SegmentPql

log = logging.getLogger(__name__)

PROFILE_SCHEMA = "_xdm.context.profile"
FORMATS = ("pql/text", "pql/json")
LIFECYCLE_STATES = ("draft", "published", "inactive")
EVALUATION_METHODS = ("batch", "continuous", "synchronous")
SORT_FIELDS = {"creationTime": "creationTime", "updateTime": "updateTime", "name": "name", "id": "id"}
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_BULK_IDS = 100
NAME_TAKEN_CODE = "SEGP-100422-422"
CANNOT_DELETE_CODE = "UPAPI-113631-403"
BULK_IDS_CODE = "UPAPI-113015-400"
BULK_NONE_FOUND_CODE = "UPAPI-113000-404"
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


def storable(doc: Mapping[str, Any]) -> None:
    """Refuse (400, naming the field) a document that a later read could not answer: nested deeper than the
    shared limit, or not encodable as UTF-8 JSON (a lone surrogate such as "\\ud800")."""
    for key, value in doc.items():
        if json_too_deep(value):
            raise _field_error(key, f"is nested more than {MAX_JSON_DEPTH} levels deep.")
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except (UnicodeEncodeError, ValueError, TypeError, RecursionError):
            raise _field_error(
                key, "is not valid Unicode JSON text (an unpaired surrogate such as \\ud800?)."
            ) from None


def _field_error(field: str, reason: str) -> BadRequest:
    return BadRequest(f"field '{field}': {reason}")


def parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise BadRequest(f"query parameter '{name}': '{value}' is not true or false.")


def values_of(value: Any) -> list[str]:
    """A query parameter that may repeat (``property=a==1&property=b==2``) as a list."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def json_path_get(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, Mapping) or part not in doc:
            return None
        doc = doc[part]
    return doc


def property_matches(doc: Mapping[str, Any], expression: str) -> bool:
    """``property=<jsonPath>==<value>`` (or ``!=``), compared as text; booleans as ``true``/``false``."""
    for op in ("==", "!="):
        if op in expression:
            path, _, expected = expression.partition(op)
            actual = json_path_get(doc, path.strip())
            if isinstance(actual, bool):
                actual = "true" if actual else "false"
            equal = actual is not None and str(actual) == expected.strip()
            return equal if op == "==" else not equal
    raise BadRequest(f"query parameter 'property': '{expression}' must read '<field>==<value>' (or '!=').")


def parse_sort(sort: str | None, default: str = "creationTime:desc") -> list[tuple[str, bool]]:
    """``sort=name:asc,updateTime:desc`` -> ``[(field, descending)]``."""
    out: list[tuple[str, bool]] = []
    for item in (sort or default).split(","):
        item = item.strip()
        if not item:
            continue
        field_name, _, direction = item.partition(":")
        if field_name not in SORT_FIELDS:
            raise BadRequest(
                f"query parameter 'sort': cannot sort by '{field_name}'; use one of {', '.join(SORT_FIELDS)} "
                "with ':asc' or ':desc'."
            )
        direction = (direction or "asc").lower()
        if direction not in ("asc", "desc"):
            raise BadRequest(f"query parameter 'sort': direction '{direction}' must be 'asc' or 'desc'.")
        out.append((SORT_FIELDS[field_name], direction == "desc"))
    return out or [("creationTime", True)]


def sort_docs(docs: list[dict[str, Any]], order: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    """Stable multi-key sort, ties broken by id."""
    docs = sorted(docs, key=lambda d: str(d.get("id")))
    for field_name, descending in reversed(order):
        docs.sort(key=lambda d, f=field_name: _sort_key(d.get(f)), reverse=descending)
    return docs


def page_info(total: int, page_size: int, limit: int, order: list[tuple[str, bool]]) -> dict[str, Any]:
    """The paging block of a sorted list response (``totalCount`` ... ``limit``), sorted by ``order[0]``."""
    field_name, descending = order[0]
    return {
        "totalCount": total,
        "totalPages": math.ceil(total / limit) if total else 0,
        "sortField": field_name,
        "sort": "desc" if descending else "asc",
        "pageSize": page_size,
        "limit": limit,
    }


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, str):
        return (1, value.lower())
    return (1, value)


def parse_bulk_ids(body: Any) -> list[str]:
    if not isinstance(body, Mapping) or not isinstance(body.get("ids"), list):
        raise BadRequest('body: expected {"ids": [{"id": "..."}, ...]}.')
    ids: list[str] = []
    for i, item in enumerate(body["ids"]):
        ident = item.get("id") if isinstance(item, Mapping) else item
        if not isinstance(ident, str) or not ident:
            raise BadRequest(f"field 'ids[{i}].id': expected a non-empty string.")
        ids.append(ident)
    if not ids or len(ids) > MAX_BULK_IDS:
        raise ApiError(
            400,
            f"The number of requested IDs is invalid. Cannot be 0 or exceed {MAX_BULK_IDS} (got {len(ids)}).",
            code=BULK_IDS_CODE,
        )
    return ids


def not_found_entry(ctx: ServiceContext, ident: str, what: str) -> dict[str, Any]:
    return {
        "requestId": ctx.request_id,
        "errors": {"404": [{"code": "UPAPI-113430-404", "message": f"{what} '{ident}' was not found."}]},
    }


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
        order = parse_sort(sort_raw if isinstance(sort_raw, str) else None)
        properties = values_of(query.pop("property", None))
        filters: list[tuple[str, bool]] = []
        for key in list(query):
            parts = key.split(".")
            if len(parts) == 3 and parts[0] == "evaluationInfo" and parts[2] == "enabled":
                if parts[1] not in EVALUATION_METHODS:
                    raise BadRequest(
                        f"query parameter '{key}': unknown evaluation method '{parts[1]}' "
                        f"(use {', '.join(EVALUATION_METHODS)})."
                    )
                filters.append((parts[1], parse_bool(values_of(query.pop(key))[-1], key)))
            elif key in ("name", "description"):
                # Case-insensitive substring, as on /audiences.
                needle = values_of(query.pop(key))[-1].lower()
                properties.append(f"\0{key}\0{needle}")
        docs = self.all()

        def keep(doc: dict[str, Any]) -> bool:
            for method, enabled in filters:
                if bool(json_path_get(doc, f"evaluationInfo.{method}.enabled")) != enabled:
                    return False
            for expr in properties:
                if expr.startswith("\0"):
                    _, field_name, needle = expr.split("\0")
                    if needle not in str(doc.get(field_name) or "").lower():
                        return False
                elif not property_matches(doc, expr):
                    return False
            return True

        docs = sort_docs([d for d in docs if keep(d)], order)
        total = len(docs)
        page_docs = docs[start : start + limit]
        field_name, descending = order[0]
        result: dict[str, Any] = {
            "segments": page_docs,
            "page": page_info(total, len(page_docs), limit, order),
            "link": {},
        }
        if start + limit < total:
            sort_text = (
                sort_raw if isinstance(sort_raw, str) else f"{field_name}:{'desc' if descending else 'asc'}"
            )
            result["link"]["next"] = (
                f"/segment/definitions?start={start + limit}&limit={limit}&sort={sort_text}"
            )
        return result

    def bulk_get(self, body: Any) -> dict[str, Any]:
        ids = parse_bulk_ids(body)
        results: dict[str, Any] = {}
        found = 0
        with self.ctx.catalog.session(readonly=True) as session:
            repo = self.ctx.repo(session, models.SegmentDefinition)
            for ident in ids:
                row = repo.get(ident)
                if row is None:
                    results[ident] = not_found_entry(self.ctx, ident, "Segment definition")
                else:
                    results[ident] = copy.deepcopy(row.body)
                    found += 1
        if not found:
            raise ApiError(404, f"The entity {','.join(ids)} is not found.", code=BULK_NONE_FOUND_CODE)
        return {"results": results}

    # --- writes ----------------------------------------------------------------------------------------------------
    def create(
        self, body: Any, *, id: str | None = None, audience_fields: Mapping[str, Any] | None = None
    ) -> dict:
        """Create a definition (and its audience). ``audience_fields``: extra audience attributes (labels, ...)."""
        fields = self._validated(body, creating=True)
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
        fields = self._validated(body, creating=False)
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
        expression = self._validated_expression(body.get("expression"))
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
    def _validated(self, body: Any, creating: bool) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise BadRequest("body: expected a segment definition object.")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _field_error("name", "is required (a non-empty string).")
        if len(name) > 255:
            raise _field_error("name", "must be at most 255 characters.")
        description = body.get("description")
        if description is not None and not isinstance(description, str):
            raise _field_error("description", "must be a string.")
        schema = body.get("schema") or {"name": PROFILE_SCHEMA}
        if not isinstance(schema, Mapping) or (schema.get("name") or PROFILE_SCHEMA) != PROFILE_SCHEMA:
            raise _field_error("schema.name", f"only '{PROFILE_SCHEMA}' is supported.")
        lifecycle = body.get("lifecycleState") or "published"
        if lifecycle not in LIFECYCLE_STATES:
            raise _field_error(
                "lifecycleState",
                f"'{lifecycle}' is not allowed here; use one of {', '.join(LIFECYCLE_STATES)} "
                "(delete a definition to archive it).",
            )
        merge_policy_id = body.get("mergePolicyId")
        if merge_policy_id is not None and not isinstance(merge_policy_id, str):
            raise _field_error("mergePolicyId", "must be a string.")
        governance = body.get("dataGovernancePolicy") or {"excludeOptOut": True}
        if not isinstance(governance, Mapping):
            raise _field_error("dataGovernancePolicy", "must be an object.")
        return {
            "name": name.strip(),
            "description": description or "",
            "expression": self._validated_expression(body.get("expression")),
            "schema": {"name": PROFILE_SCHEMA},
            "evaluationInfo": self._validated_evaluation_info(body.get("evaluationInfo")),
            "mergePolicyId": self._merge_policy(merge_policy_id),
            "lifecycleState": lifecycle,
            "dataGovernancePolicy": dict(governance),
            "profileInstanceId": body.get("profileInstanceId") or "ups",
            "payloadSchema": body.get("payloadSchema"),
            "folderId": self._folder(body.get("folderId")),
        }

    @staticmethod
    def _validated_expression(expression: Any) -> dict[str, Any]:
        if not isinstance(expression, Mapping):
            raise _field_error(
                "expression", 'is required: {"type": "PQL", "format": "pql/text", "value": ...}.'
            )
        kind = str(expression.get("type") or "PQL")
        if kind.upper() != "PQL":
            raise _field_error("expression.type", f"'{kind}' is not supported; use 'PQL'.")
        fmt = expression.get("format") or "pql/text"
        if fmt not in FORMATS:
            raise _field_error(
                "expression.format", f"'{fmt}' is not supported; use 'pql/text' or 'pql/json'."
            )
        value = expression.get("value")
        if fmt == "pql/text" and (not isinstance(value, str) or not value.strip()):
            raise _field_error("expression.value", "is required (the PQL text).")
        if fmt == "pql/json":
            if isinstance(value, str):
                try:
                    json.loads(value)
                except ValueError as exc:
                    raise _field_error("expression.value", f"is not valid JSON: {exc}.") from None
            elif not isinstance(value, Mapping):
                raise _field_error(
                    "expression.value", "must be the pql/json tree (an object or its JSON text)."
                )
        return {"type": "PQL", "format": fmt, "value": value}

    @staticmethod
    def _validated_evaluation_info(info: Any) -> dict[str, dict[str, bool]]:
        if info is None:
            return {
                "batch": {"enabled": True},
                "continuous": {"enabled": False},
                "synchronous": {"enabled": False},
            }
        if not isinstance(info, Mapping):
            raise _field_error("evaluationInfo", "must be an object.")
        out: dict[str, dict[str, bool]] = {}
        for method in EVALUATION_METHODS:
            entry = info.get(method) or {}
            enabled = entry.get("enabled", False) if isinstance(entry, Mapping) else entry
            if not isinstance(enabled, bool):
                raise _field_error(f"evaluationInfo.{method}.enabled", "must be true or false.")
            out[method] = {"enabled": enabled}
        unknown = set(info) - set(EVALUATION_METHODS)
        if unknown:
            raise _field_error("evaluationInfo", f"unknown method(s) {', '.join(sorted(unknown))}.")
        if not any(v["enabled"] for v in out.values()):
            out["batch"]["enabled"] = True  # as the contract: a definition is batch unless it says otherwise
        return out

    def _folder(self, folder_id: Any) -> str:
        """Extension: the folder the definition (and its audience) is filed in; ``root`` when none."""
        from segmentation_pipelines.service.folders import check_folder_id

        with self.ctx.catalog.session(readonly=True) as session:
            return check_folder_id(self.ctx, session, folder_id, "AEPSegments")

    def _merge_policy(self, merge_policy_id: str | None) -> str:
        policies = MergePoliciesService(self.ctx)
        if merge_policy_id is None:
            return policies.ensure_default()["id"]
        try:
            policies.get(merge_policy_id)
        except ApiError as exc:
            if exc.status != 404:
                raise
            raise _field_error(
                "mergePolicyId", f"no merge policy '{merge_policy_id}' in this sandbox."
            ) from None
        return merge_policy_id

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
        rows = self.ctx.repo(session, models.Audience).find(models.Audience.type == TYPE_SEGMENT_DEFINITION)
        graph = {r.id: builtins.list(r.body.get("dependencies") or []) for r in rows if r.id != ident}
        cycle = find_cycle(ident, references, graph)
        if cycle:
            names = {r.id: r.name for r in rows}
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
