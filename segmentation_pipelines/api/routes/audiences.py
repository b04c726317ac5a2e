"""``/audiences`` (thin over ``AudiencesService``), and this project's extension ``/audiences/{id}/members``.

``GET /audiences/{id}/members?evaluationTime=<ISO 8601 or epoch ms>&start=0&limit=100``: the members of the
latest evaluation (or of the one in effect at ``evaluationTime``) with ``profileId``, ``identityMap``, ``status``
(``realized``/``existing``/``exited``) and ``lastQualificationTime``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response

from segmentation_pipelines.api.deps import ServicesDep, query_of

PREFIX = "/data/core/ups"

router = APIRouter(prefix=PREFIX, tags=["audiences"])


@router.get("/audiences", summary="List audiences")
def list_audiences(request: Request, services: ServicesDep) -> dict:
    return services.audiences.list(**query_of(request))


@router.post(
    "/audiences", status_code=201, summary="Create an audience (SegmentDefinition or ExternalSegment)"
)
def create_audience(services: ServicesDep, body: Annotated[Any, Body()]) -> dict:
    return services.audiences.create(body)


@router.post("/audiences/bulk-get", status_code=207, summary="Get several audiences")
def bulk_get_audiences(services: ServicesDep, body: Annotated[Any, Body()]) -> dict:
    return services.audiences.bulk_get(body)


@router.get("/audiences/{audience_id}", summary="Get an audience")
def get_audience(audience_id: str, services: ServicesDep) -> dict:
    return services.audiences.get(audience_id)


@router.put("/audiences/{audience_id}", status_code=201, summary="Replace an audience")
def replace_audience(audience_id: str, services: ServicesDep, body: Annotated[Any, Body()]) -> dict:
    return services.audiences.update(audience_id, body)


@router.patch("/audiences/{audience_id}", status_code=201, summary="Patch an audience (JSON Patch, op 'add')")
def patch_audience(audience_id: str, services: ServicesDep, body: Annotated[Any, Body()]) -> dict:
    return services.audiences.patch(audience_id, body)


@router.delete("/audiences/{audience_id}", status_code=204, summary="Delete an audience")
def delete_audience(audience_id: str, services: ServicesDep) -> Response:
    services.audiences.delete(audience_id)
    return Response(status_code=204)


@router.get(
    "/audiences/{audience_id}/members", summary="Members of an audience's latest (or a past) evaluation"
)
def audience_members(
    audience_id: str,
    request: Request,
    services: ServicesDep,
    evaluation_time: Annotated[
        str | None, Query(alias="evaluationTime", description="ISO 8601 or epoch ms; default: latest")
    ] = None,
    start: Annotated[str | None, Query()] = None,
    limit: Annotated[str | None, Query()] = None,
) -> dict:
    # The Python client sends its keyword as is (evaluation_time): accept both spellings.
    evaluation_time = evaluation_time or request.query_params.get("evaluation_time")
    return services.audiences.members(audience_id, evaluation_time=evaluation_time, start=start, limit=limit)
