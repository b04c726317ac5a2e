"""``/data/core/ups/config/mergePolicies``: list, create, get, update and delete merge policies.

Thin over :class:`segmentation_pipelines.service.merge_policies.MergePoliciesService`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from segmentation_pipelines.api.deps import ServicesDep

PREFIX = "/data/core/ups"

router = APIRouter(prefix=PREFIX, tags=["merge policies"])


@router.get("/config/mergePolicies", summary="List merge policies")
def list_merge_policies(
    services: ServicesDep,
    default: Annotated[str | None, Query(description="true: only the default policy")] = None,
    start: Annotated[str | None, Query()] = None,
    limit: Annotated[str | None, Query()] = None,
) -> dict:
    return services.merge_policies.list(default=default, start=start, limit=limit)


@router.post("/config/mergePolicies", summary="Create a merge policy")
def create_merge_policy(
    services: ServicesDep,
    body: Annotated[
        Any,
        Body(
            description='{"name", "attributeMerge": {"type": "timestampOrdered" | "dataSetPrecedence", "order"}, "default"}'
        ),
    ],
) -> dict:
    return services.merge_policies.create(body)


@router.get("/config/mergePolicies/{policy_id}", summary="Get a merge policy")
def get_merge_policy(policy_id: str, services: ServicesDep) -> dict:
    return services.merge_policies.get(policy_id)


@router.patch("/config/mergePolicies/{policy_id}", summary="Update fields of a merge policy")
def patch_merge_policy(policy_id: str, services: ServicesDep, body: Annotated[Any, Body()]) -> dict:
    return services.merge_policies.update(policy_id, body)


@router.put("/config/mergePolicies/{policy_id}", summary="Replace a merge policy")
def put_merge_policy(policy_id: str, services: ServicesDep, body: Annotated[Any, Body()]) -> dict:
    return services.merge_policies.update(policy_id, body)


@router.delete("/config/mergePolicies/{policy_id}", status_code=204, summary="Delete a merge policy")
def delete_merge_policy(policy_id: str, services: ServicesDep) -> Response:
    services.merge_policies.delete(policy_id)
    return Response(status_code=204)
