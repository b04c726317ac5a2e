"""Audiences (``/audiences``): every segment definition's audience, and external (custom upload) audiences.

A ``SegmentDefinition`` audience is the audience view of a definition (same id): creating, replacing (PUT),
patching or deleting it goes through :class:`SegmentDefinitionsService`, so both views stay one record. External
audiences (``ExternalSegment``; the SPEC's ``ExternalAudience`` is accepted too) live only here; their members come
from ingestion runs, in the same membership format.

Members (``GET /audiences/{id}/members``, this project's extension): the members of the latest evaluation, or of
the evaluation in effect at ``evaluation_time``, paged, with status and qualification time, including the
profiles that exited (status ``exited``, kept 30 days).
"""

from __future__ import annotations

import builtins
import copy
from collections.abc import Mapping
from typing import Any

from segmentation_pipelines.catalog import models
from segmentation_pipelines.catalog.db import now_ms
from segmentation_pipelines.catalog.repository import new_id
from segmentation_pipelines.engine import memberships
from segmentation_pipelines.errors import ApiError, BadRequest, Conflict, NotFound
from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.datasets import DatasetsService
from segmentation_pipelines.service.external_audiences import ExternalAudiencesService, new_audience_stamps
from segmentation_pipelines.service.folders import check_folder_id
from segmentation_pipelines.service.query import (
    bulk_results,
    json_path_get,
    page_info,
    parse_bool,
    parse_bulk_ids,
    parse_int,
    parse_sort,
    property_filters,
    sort_docs,
    values_of,
)
from segmentation_pipelines.service.segment_definition_fields import LIFECYCLE_STATES
from segmentation_pipelines.service.segment_definitions import (
    CANNOT_DELETE_CODE,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    SORT_FIELDS,
    TYPE_SEGMENT_DEFINITION,
    SegmentDefinitionsService,
    drop_memberships,
    remove_membership_files,
)
from segmentation_pipelines.timeutil import iso, parse_optional_time, to_ms

EXTERNAL_TYPES = ("ExternalSegment", "ExternalAudience")
DELETED_STATES = ("archived", "deleted", "Deleted")
ORIGINS = (
    "REAL_TIME_CUSTOMER_PROFILE",
    "CUSTOM_UPLOAD",
    "AUDIENCE_ORCHESTRATION",
    "AUDIENCE_MANAGER",
    "AUDIENCE_MATCH",
)
VALIDATION_CODE = "UPAPI-113434-400"
DATASET_CODE = "UPLIB-101554-503"
NOT_FOUND_CODE = "UPAPI-113430-404"
MEMBERS_DEFAULT_LIMIT = 100
MEMBERS_MAX_LIMIT = 10000
IMMUTABLE = ("id", "type", "imsOrgId", "sandbox", "creationTime", "createEpoch", "audienceId")
# Definition fields an audience document may carry (everything else is audience-only or read-only).
_DEFINITION_FIELDS = (
    "name",
    "description",
    "expression",
    "schema",
    "evaluationInfo",
    "mergePolicyId",
    "profileInstanceId",
    "dataGovernancePolicy",
    "lifecycleState",
    "payloadSchema",
    "folderId",
)


def _validation(message: str) -> ApiError:
    return ApiError(400, f"There is a problem in audience validation. {message}", code=VALIDATION_CODE)


def _not_found(ident: str) -> NotFound:
    return NotFound("Audience", ident, code=NOT_FOUND_CODE)


def identity_map_doc(entries: Any) -> dict[str, list[dict[str, Any]]]:
    """The stored ``LIST(STRUCT(key, value))`` identity map as XDM's ``{namespace: [{id, primary}]}``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in entries or []:
        out.setdefault(entry["key"], []).extend(
            {"id": v["id"], "primary": bool(v.get("primary"))} for v in entry.get("value") or []
        )
    return out


def _external_member_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """An external audience member's ``validUntil`` and enrichment ``payload`` (JSON values), when it has them."""
    out: dict[str, Any] = {}
    if "validUntil" in row:
        out["validUntil"] = iso(row["validUntil"])
    if isinstance(row.get("payload"), Mapping):
        out["payload"] = {
            k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row["payload"].items()
        }
    return out


class AudiencesService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.definitions = SegmentDefinitionsService(ctx)
        self.evaluations = AudienceEvaluations(ctx)

    # --- reads -----------------------------------------------------------------------------------------------------
    def _row(self, session, ident: str) -> models.Audience:
        row = self.ctx.repo(session, models.Audience).get(ident)
        if row is None:
            raise _not_found(ident)
        return row

    def _docs(self) -> builtins.list[dict[str, Any]]:
        """Every audience document of the sandbox, with ``dependents`` filled in."""
        with self.ctx.catalog.session(readonly=True) as session:
            rows = self.ctx.repo(session, models.Audience).find()
            docs = [copy.deepcopy(r.body) for r in rows]
        dependents: dict[str, builtins.list[str]] = {}
        for d in docs:
            for ref in d.get("dependencies") or []:
                dependents.setdefault(ref, []).append(d["id"])
        for d in docs:
            d["dependents"] = sorted(dependents.get(d["id"], []))
            d.setdefault("dependencies", [])
        return docs

    def get(self, id: str) -> dict[str, Any]:
        with self.ctx.catalog.session(readonly=True) as session:
            doc = copy.deepcopy(self._row(session, id).body)
            doc["dependents"] = [d["id"] for d in self.definitions.dependents_of(session, id)]
        doc.setdefault("dependencies", [])
        latest = self.evaluations.latest(id)
        if latest is not None:
            doc["metrics"] = self._metrics(latest)
        return doc

    @staticmethod
    def _metrics(evaluation) -> dict[str, Any]:
        counts = evaluation.counts
        epoch = evaluation.evaluation_ms // 1000
        return {
            "type": "evaluation",
            "jobId": evaluation.job_id,
            "id": evaluation.audience_id,
            "data": {
                "totalProfiles": counts.get("members", 0),
                "totalProfilesByNamespace": dict(counts.get("by_namespace") or {}),
                "totalProfilesByStatus": {
                    "realized": counts.get("realized", 0),
                    "existing": counts.get("existing", 0),
                    "exited": counts.get("exited", 0),
                },
                "evaluationTime": iso(evaluation.evaluation_time),
            },
            "createEpoch": epoch,
            "updateEpoch": epoch,
        }

    def list(self, **query: Any) -> dict[str, Any]:
        start = parse_int(query.pop("start", None), "start", 0)
        limit = parse_int(query.pop("limit", None), "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        sort_raw = query.pop("sort", None)
        order = parse_sort(sort_raw, SORT_FIELDS)
        properties = property_filters(query.pop("property", None))
        name = (values_of(query.pop("name", None)) or [""])[-1].lower()
        description = (values_of(query.pop("description", None)) or [""])[-1].lower()
        entity_type = (values_of(query.pop("entityType", None)) or [None])[-1]
        include_system = parse_bool((values_of(query.pop("isSystem", None)) or ["false"])[-1], "isSystem")

        def keep(doc: dict[str, Any]) -> bool:
            if bool(doc.get("isSystem")) != include_system:
                return False
            if name and name not in str(doc.get("name") or "").lower():
                return False
            if description and description not in str(doc.get("description") or "").lower():
                return False
            if entity_type and (json_path_get(doc, "schema.name") or "_xdm.context.profile") != entity_type:
                return False
            return all(test(doc) for test in properties)

        docs = sort_docs([d for d in self._docs() if keep(d)], order)
        total = len(docs)
        page = docs[start : start + limit]
        result: dict[str, Any] = {
            "children": page,
            "_page": {**page_info(total, len(page), limit, order), "start": start},
            "_links": {},
        }
        if start + limit < total:
            result["_page"]["next"] = start + limit
            result["_links"]["next"] = {
                "href": f"@/audiences?start={start + limit}&limit={limit}&totalCount={total}"
            }
        return result

    def bulk_get(self, body: Any) -> dict[str, Any]:
        ids = parse_bulk_ids(body)
        docs = {d["id"]: d for d in self._docs()}
        return bulk_results(ids, docs, "Audience", self.ctx.request_id)

    # --- writes ----------------------------------------------------------------------------------------------------
    def create(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise BadRequest("body: expected an audience object.")
        kind = body.get("type") or (TYPE_SEGMENT_DEFINITION if "expression" in body else None)
        if kind == TYPE_SEGMENT_DEFINITION:
            state = body.get("lifecycleState") or body.get("lifecycle")
            if state in DELETED_STATES:
                raise _validation(f"Cannot set lifecycleState as {state}.")
            definition = self.definitions.create(
                {k: body[k] for k in _DEFINITION_FIELDS if k in body},
                audience_fields=self._audience_fields(body),
            )
            return self.get(definition["id"])
        if kind in EXTERNAL_TYPES:
            return self._create_external(body, kind)
        raise _validation(
            f"field 'type': '{kind}' is not an audience type; use 'SegmentDefinition' (with an expression) or "
            "'ExternalSegment'."
        )

    def update(self, id: str, body: Any) -> dict[str, Any]:
        """PUT: replace the audience (its definition, for a SegmentDefinition audience)."""
        if not isinstance(body, Mapping):
            raise BadRequest("body: expected an audience object.")
        with self.ctx.catalog.session(readonly=True) as session:
            current = copy.deepcopy(self._row(session, id).body)
        for key in ("type", "namespace"):
            if key in body and body[key] != current.get(key):
                raise _validation(f"{key.capitalize()} is immutable field.")
        if current.get("type") == TYPE_SEGMENT_DEFINITION:
            state = body.get("lifecycleState") or body.get("lifecycle")
            if state in DELETED_STATES:
                raise _validation(
                    "lifecycle field can not be modified to Delete; delete the audience instead."
                )
            fields = {k: body[k] for k in _DEFINITION_FIELDS if k in body}
            self.definitions.update(id, fields, audience_fields=self._audience_fields(body))
            return self.get(id)
        return self._replace_external(id, current, body)

    def patch(self, id: str, patch_ops: Any) -> dict[str, Any]:
        """JSON Patch (``op`` ``add``/``replace``/``remove``) applied to the audience, then written as a PUT."""
        if not isinstance(patch_ops, list) or not patch_ops:
            raise BadRequest('body: expected a JSON Patch array, e.g. [{"op": "add", "path": "/name", ...}].')
        with self.ctx.catalog.session(readonly=True) as session:
            doc = copy.deepcopy(self._row(session, id).body)
        for i, item in enumerate(patch_ops):
            if not isinstance(item, Mapping):
                raise BadRequest(f"body[{i}]: expected an object with 'op', 'path' and 'value'.")
            op, path = item.get("op"), item.get("path")
            if op not in ("add", "replace", "remove"):
                raise BadRequest(
                    f"body[{i}].op: '{op}' is not supported; use 'add' (or 'replace', 'remove')."
                )
            if not isinstance(path, str) or not path.startswith("/") or path == "/":
                raise BadRequest(f"body[{i}].path: '{path}' must be a JSON Pointer such as '/name'.")
            parts = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
            if parts[0] in IMMUTABLE:
                raise _validation(f"'{parts[0]}' cannot be changed.")
            if parts[0] in ("lifecycleState", "lifecycle") and item.get("value") in DELETED_STATES:
                raise _validation("lifecycle field can not be modified to Delete using Patch operation.")
            target = doc
            for part in parts[:-1]:
                nxt = target.get(part) if isinstance(target, dict) else None
                if not isinstance(nxt, dict):
                    nxt = {}
                    target[part] = nxt
                target = nxt
            if op == "remove":
                target.pop(parts[-1], None)
            else:
                if "value" not in item:
                    raise BadRequest(f"body[{i}].value: required for '{op}'.")
                target[parts[-1]] = item["value"]
        return self.update(id, doc)

    def delete(self, id: str) -> None:
        with self.ctx.catalog.session(readonly=True) as session:
            row = self._row(session, id)
            kind = row.type
            external = (row.body.get("linkedAudienceRef") or {}).get("externalAudienceId") == id
        if kind == TYPE_SEGMENT_DEFINITION:
            self.definitions.delete(id)
            return None
        if external:
            # An /data/core/ais external audience: deleted with its runs and data, by its own rules.
            ExternalAudiencesService(self.ctx).delete(id)
            return None
        with self.ctx.catalog.session() as session:
            row = self._row(session, id)
            dependents = self.definitions.dependents_of(session, id)
            if dependents:
                names = ", ".join(f"'{d['name']}' ({d['id']})" for d in dependents)
                raise ApiError(
                    400,
                    f"The audience cannot be deleted: the segment definitions {names} reference it through inSegment.",
                    code=CANNOT_DELETE_CODE,
                    title="The audience cannot be deleted.",
                )
            self.ctx.repo(session, models.Audience).delete(row)
            drop_memberships(self.ctx, session, id)
        remove_membership_files(self.ctx, id)
        return None

    # --- members ---------------------------------------------------------------------------------------------------
    def members(
        self,
        audience_id: str,
        evaluation_time: Any = None,
        start: Any = 0,
        limit: Any = MEMBERS_DEFAULT_LIMIT,
        **query: Any,
    ) -> dict[str, Any]:
        """One page of the members of the latest evaluation (or of the one in effect at ``evaluation_time``)."""
        evaluation_time = (
            evaluation_time if evaluation_time is not None else query.pop("evaluationTime", None)
        )
        start_n = parse_int(start, "start", 0)
        limit_n = parse_int(limit, "limit", MEMBERS_DEFAULT_LIMIT, minimum=1, maximum=MEMBERS_MAX_LIMIT)
        at = parse_optional_time(evaluation_time, "query parameter 'evaluationTime'")
        with self.ctx.catalog.session(readonly=True) as session:
            self._row(session, audience_id)
        evaluation = self.evaluations.latest(audience_id, at_or_before_ms=None if at is None else to_ms(at))
        result: dict[str, Any] = {
            "audienceId": audience_id,
            "evaluationTime": None,
            "jobId": None,
            "children": [],
            "_page": {"totalCount": 0, "pageSize": 0, "start": start_n, "limit": limit_n},
            "_links": {},
        }
        if evaluation is None:
            if at is not None:
                raise NotFound("Evaluation at or before " + iso(at) + " of audience", audience_id)
            return result
        total, rows = memberships.read_members(evaluation.path, start_n, limit_n)
        result.update(
            {
                "evaluationTime": iso(evaluation.evaluation_time),
                "jobId": evaluation.job_id,
                "counts": {k: v for k, v in evaluation.counts.items() if k != "by_namespace"}
                | {"byNamespace": dict(evaluation.counts.get("by_namespace") or {})},
                "children": [
                    {
                        "profileId": r["profile_id"],
                        "identityMap": identity_map_doc(r.get("identityMap")),
                        "status": r["status"],
                        "lastQualificationTime": iso(r["lastQualificationTime"]),
                        **_external_member_fields(r),
                    }
                    for r in rows
                ],
            }
        )
        result["_page"].update({"totalCount": total, "pageSize": len(rows)})
        if start_n + limit_n < total:
            result["_page"]["next"] = start_n + limit_n
            result["_links"]["next"] = {
                "href": f"@/audiences/{audience_id}/members?start={start_n + limit_n}&limit={limit_n}"
                f"&evaluationTime={evaluation.evaluation_ms}"
            }
        return result

    # --- helpers ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _audience_fields(body: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "labels" in body:
            if not isinstance(body["labels"], list):
                raise _validation("labels must be a list of strings.")
            out["labels"] = [str(x) for x in body["labels"]]
        if "overridePerformanceWarnings" in body:
            out["overridePerformanceWarnings"] = bool(body["overridePerformanceWarnings"])
        return out

    def _external_fields(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _validation("field 'name' is mandatory (a non-empty string).")
        state = body.get("lifecycleState") or body.get("lifecycle") or "published"
        if state in DELETED_STATES:
            raise _validation(f"Cannot set lifecycleState as {state}.")
        if state not in LIFECYCLE_STATES and state != "active":
            raise _validation(f"lifecycleState '{state}' must be one of {', '.join(LIFECYCLE_STATES)}.")
        origin = body.get("originName") or "CUSTOM_UPLOAD"
        if origin not in ORIGINS:
            raise _validation(f"originName '{origin}' must be one of {', '.join(ORIGINS)}.")
        dataset_id = body.get("datasetId")
        if dataset_id is not None:
            try:
                DatasetsService(self.ctx).get(dataset_id)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                raise ApiError(
                    400, f"Dataset {dataset_id} cannot be retrieved from Catalog.", code=DATASET_CODE
                ) from None
        fields = {
            "name": name.strip(),
            "description": body.get("description") or "",
            "namespace": body.get("namespace") or "CustomerAudienceUpload",
            "lifecycleState": "published" if state == "active" else state,
            "originName": origin,
            **self._audience_fields(body),
        }
        for key in ("datasetId", "audienceMeta", "linkedAudienceRef", "sourceId"):
            if body.get(key) is not None:
                fields[key] = body[key]
        with self.ctx.catalog.session(readonly=True) as session:
            folder_id = check_folder_id(self.ctx, session, body.get("folderId"), fields["namespace"])
        if folder_id != "root":
            fields["folderId"] = folder_id  # extension: the folder the audience is filed in
        return fields

    def _create_external(self, body: Mapping[str, Any], kind: str) -> dict[str, Any]:
        fields = self._external_fields(body)
        ident = new_id()
        audience_id = body.get("audienceId") or ident
        now = now_ms()
        doc = {
            "id": ident,
            "audienceId": str(audience_id),
            "imsOrgId": self.ctx.org_id,
            "sandbox": self.ctx.sandbox_doc(),
            "type": kind,
            "isSystem": False,
            "saveSegmentMembership": True,
            "labels": [],
            **fields,
            **new_audience_stamps(self.ctx.user, now),
            "_etag": f'"{new_id()}"',
        }
        with self.ctx.catalog.session() as session:
            repo = self.ctx.repo(session, models.Audience)
            if repo.find(models.Audience.audience_id == doc["audienceId"]):
                raise Conflict(
                    f"An audience with audienceId '{doc['audienceId']}' already exists in this sandbox."
                )
            repo.add(
                id=ident,
                name=doc["name"],
                audience_id=doc["audienceId"],
                type=kind,
                body=doc,
                created_ms=now,
                updated_ms=now,
            )
        return self.get(ident)

    def _replace_external(self, id: str, current: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        fields = self._external_fields({**body, "namespace": body.get("namespace", current.get("namespace"))})
        now = now_ms()
        keep = {
            k: current[k]
            for k in (*IMMUTABLE, "isSystem", "saveSegmentMembership", "createdBy")
            if k in current
        }
        doc = {
            **keep,
            "labels": [],
            **fields,
            "dependencies": [],
            "lastModifiedBy": self.ctx.user,
            "updateTime": now,
            "updateEpoch": now // 1000,
            "_etag": f'"{new_id()}"',
        }
        with self.ctx.catalog.session() as session:
            row = self.ctx.repo(session, models.Audience).get(id, for_update=True)
            if row is None:
                raise _not_found(id)
            self.ctx.repo(session, models.Audience).update(row, name=doc["name"], body=doc, updated_ms=now)
        return self.get(id)
