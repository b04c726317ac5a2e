"""``/data/core/ups/access/entities``: the merged profile an identity belongs to.

Thin over :class:`segmentation_pipelines.service.profiles.ProfilesService`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from segmentation_pipelines.api.deps import ServicesDep

PREFIX = "/data/core/ups"

router = APIRouter(prefix=PREFIX, tags=["profiles"])


@router.get("/access/entities", summary="Get the merged profile of an identity")
def get_entity(
    services: ServicesDep,
    entity_id_ns: Annotated[str, Query(alias="entityIdNS", description="Identity namespace, e.g. Email")],
    entity_id: Annotated[str, Query(alias="entityId", description="Identity value")],
    schema_name: Annotated[str, Query(alias="schema.name")] = "_xdm.context.profile",
    merge_policy_id: Annotated[str | None, Query(alias="mergePolicyId")] = None,
) -> dict:
    return services.profiles.get(entity_id_ns, entity_id, merge_policy_id, **{"schema.name": schema_name})
