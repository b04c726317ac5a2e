"""The fields of a segment definition as a request writes them: each checked (a ``400`` naming the field and what
to send instead), defaults filled in, and nothing stored that a later read could not answer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from segmentation_pipelines.errors import ApiError, BadRequest
from segmentation_pipelines.pql.limits import MAX_JSON_DEPTH, json_too_deep
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.folders import check_folder_id
from segmentation_pipelines.service.merge_policies import MergePoliciesService

PROFILE_SCHEMA = "_xdm.context.profile"
FORMATS = ("pql/text", "pql/json")
LIFECYCLE_STATES = ("draft", "published", "inactive")
EVALUATION_METHODS = ("batch", "continuous", "synchronous")


def storable(doc: Mapping[str, Any]) -> None:
    """Refuse (400, naming the field) a document that a later read could not answer: nested deeper than the
    shared limit, or not encodable as UTF-8 JSON (a lone surrogate such as "\\ud800")."""
    for key, value in doc.items():
        if json_too_deep(value):
            raise field_error(key, f"is nested more than {MAX_JSON_DEPTH} levels deep.")
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except (UnicodeEncodeError, ValueError, TypeError, RecursionError):
            raise field_error(
                key, "is not valid Unicode JSON text (an unpaired surrogate such as \\ud800?)."
            ) from None


def field_error(field: str, reason: str) -> BadRequest:
    return BadRequest(f"field '{field}': {reason}")


def validated_fields(ctx: ServiceContext, body: Any) -> dict[str, Any]:
    """The fields of a definition create/PATCH body, validated (400 naming the field), defaults filled in."""
    if not isinstance(body, Mapping):
        raise BadRequest("body: expected a segment definition object.")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise field_error("name", "is required (a non-empty string).")
    if len(name) > 255:
        raise field_error("name", "must be at most 255 characters.")
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        raise field_error("description", "must be a string.")
    schema = body.get("schema") or {"name": PROFILE_SCHEMA}
    if not isinstance(schema, Mapping) or (schema.get("name") or PROFILE_SCHEMA) != PROFILE_SCHEMA:
        raise field_error("schema.name", f"only '{PROFILE_SCHEMA}' is supported.")
    lifecycle = body.get("lifecycleState") or "published"
    if lifecycle not in LIFECYCLE_STATES:
        raise field_error(
            "lifecycleState",
            f"'{lifecycle}' is not allowed here; use one of {', '.join(LIFECYCLE_STATES)} "
            "(delete a definition to archive it).",
        )
    merge_policy_id = body.get("mergePolicyId")
    if merge_policy_id is not None and not isinstance(merge_policy_id, str):
        raise field_error("mergePolicyId", "must be a string.")
    governance = body.get("dataGovernancePolicy") or {"excludeOptOut": True}
    if not isinstance(governance, Mapping):
        raise field_error("dataGovernancePolicy", "must be an object.")
    return {
        "name": name.strip(),
        "description": description or "",
        "expression": validated_expression(body.get("expression")),
        "schema": {"name": PROFILE_SCHEMA},
        "evaluationInfo": validated_evaluation_info(body.get("evaluationInfo")),
        "mergePolicyId": _merge_policy(ctx, merge_policy_id),
        "lifecycleState": lifecycle,
        "dataGovernancePolicy": dict(governance),
        "profileInstanceId": body.get("profileInstanceId") or "ups",
        "payloadSchema": body.get("payloadSchema"),
        "folderId": _folder(ctx, body.get("folderId")),
    }


def validated_expression(expression: Any) -> dict[str, Any]:
    if not isinstance(expression, Mapping):
        raise field_error("expression", 'is required: {"type": "PQL", "format": "pql/text", "value": ...}.')
    kind = str(expression.get("type") or "PQL")
    if kind.upper() != "PQL":
        raise field_error("expression.type", f"'{kind}' is not supported; use 'PQL'.")
    fmt = expression.get("format") or "pql/text"
    if fmt not in FORMATS:
        raise field_error("expression.format", f"'{fmt}' is not supported; use 'pql/text' or 'pql/json'.")
    value = expression.get("value")
    if fmt == "pql/text" and (not isinstance(value, str) or not value.strip()):
        raise field_error("expression.value", "is required (the PQL text).")
    if fmt == "pql/json":
        if isinstance(value, str):
            try:
                json.loads(value)
            except ValueError as exc:
                raise field_error("expression.value", f"is not valid JSON: {exc}.") from None
        elif not isinstance(value, Mapping):
            raise field_error("expression.value", "must be the pql/json tree (an object or its JSON text).")
    return {"type": "PQL", "format": fmt, "value": value}


def validated_evaluation_info(info: Any) -> dict[str, dict[str, bool]]:
    if info is None:
        return {
            "batch": {"enabled": True},
            "continuous": {"enabled": False},
            "synchronous": {"enabled": False},
        }
    if not isinstance(info, Mapping):
        raise field_error("evaluationInfo", "must be an object.")
    out: dict[str, dict[str, bool]] = {}
    for method in EVALUATION_METHODS:
        entry = info.get(method) or {}
        enabled = entry.get("enabled", False) if isinstance(entry, Mapping) else entry
        if not isinstance(enabled, bool):
            raise field_error(f"evaluationInfo.{method}.enabled", "must be true or false.")
        out[method] = {"enabled": enabled}
    unknown = set(info) - set(EVALUATION_METHODS)
    if unknown:
        raise field_error("evaluationInfo", f"unknown method(s) {', '.join(sorted(unknown))}.")
    if not any(v["enabled"] for v in out.values()):
        out["batch"]["enabled"] = True  # as the contract: a definition is batch unless it says otherwise
    return out


def _folder(ctx: ServiceContext, folder_id: Any) -> str:
    """Extension: the folder the definition (and its audience) is filed in; ``root`` when none."""

    with ctx.catalog.session(readonly=True) as session:
        return check_folder_id(ctx, session, folder_id, "AEPSegments")


def _merge_policy(ctx: ServiceContext, merge_policy_id: str | None) -> str:
    policies = MergePoliciesService(ctx)
    if merge_policy_id is None:
        return policies.ensure_default()["id"]
    try:
        policies.get(merge_policy_id)
    except ApiError as exc:
        if exc.status != 404:
            raise
        raise field_error("mergePolicyId", f"no merge policy '{merge_policy_id}' in this sandbox.") from None
    return merge_policy_id
