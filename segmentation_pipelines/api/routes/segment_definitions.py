"""``/segment/definitions`` and ``/segment/conversion`` (thin over ``SegmentDefinitionsService``).

List parameters: ``start``, ``limit`` (default 100), ``page``, ``sort`` (``updateTime:desc``, ``creationTime``,
``name``), ``property`` (``name==x``, may repeat), ``evaluationInfo.<batch|continuous|synchronous>.enabled``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from segmentation_pipelines.api.deps import ServicesDep, query_of

PREFIX = "/data/core/ups"

router = APIRouter(prefix=PREFIX, tags=["segment definitions"])


@router.get("/segment/definitions", summary="List segment definitions")
def list_segment_definitions(request: Request, services: ServicesDep) -> dict:
    return services.segment_definitions.list(**query_of(request))


@router.post(
    "/segment/definitions", summary="Create a segment definition (PQL checked against the profile schema)"
)
def create_segment_definition(services: ServicesDep, body: Annotated[Any, Body()]) -> dict:
    return services.segment_definitions.create(body)


@router.post("/segment/definitions/bulk-get", status_code=207, summary="Get several segment definitions")
def bulk_get_segment_definitions(services: ServicesDep, body: Annotated[Any, Body()]) -> dict:
    return services.segment_definitions.bulk_get(body)


@router.get("/segment/definitions/{definition_id}", summary="Get a segment definition")
def get_segment_definition(definition_id: str, services: ServicesDep) -> dict:
    return services.segment_definitions.get(definition_id)


@router.patch(
    "/segment/definitions/{definition_id}", summary="Overwrite a segment definition (full replacement)"
)
def update_segment_definition(
    definition_id: str, services: ServicesDep, body: Annotated[Any, Body()]
) -> dict:
    return services.segment_definitions.update(definition_id, body)


@router.delete("/segment/definitions/{definition_id}", summary="Delete a segment definition")
def delete_segment_definition(definition_id: str, services: ServicesDep) -> dict:
    return services.segment_definitions.delete(definition_id)


@router.post("/segment/conversion", summary="Convert a definition's expression between pql/text and pql/json")
def convert_segment_definition(services: ServicesDep, body: Annotated[Any, Body()]) -> dict:
    return services.segment_definitions.convert(body)
