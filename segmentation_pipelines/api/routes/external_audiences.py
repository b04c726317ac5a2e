"""``/data/core/ais/external-audience...``: external audiences and their ingestion runs (thin over the service).

Creating returns 202 with an ``operationId`` (poll ``GET /external-audiences/operations/{id}``); the first
ingestion, like every run, is launched by a Dagster sensor (or ``serve``'s runner). Sources are read from the
sandbox's landing area only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response

from segmentation_pipelines.api.deps import ServicesDep, query_of

PREFIX = "/data/core/ais"

router = APIRouter(prefix=PREFIX, tags=["external audiences"])


@router.post("/external-audience/", status_code=202, summary="Create an external audience")
@router.post("/external-audience", status_code=202, include_in_schema=False)
def create_external_audience(services: ServicesDep, body: Annotated[Any, Body()]) -> dict:
    return services.external_audiences.create(body)


@router.get("/external-audiences/operations/{operation_id}", summary="Status of a creation")
@router.get("/external-audience/operations/{operation_id}", include_in_schema=False)
def get_operation(operation_id: str, services: ServicesDep) -> dict:
    return services.external_audiences.operation(operation_id)


@router.get("/external-audiences", summary="List external audiences")
@router.get("/external-audience/", include_in_schema=False)
def list_external_audiences(request: Request, services: ServicesDep) -> dict:
    return services.external_audiences.list(**query_of(request))


@router.post("/external-audience/extend-ttl/{audience_id}", summary="Extend the data expiry")
def extend_ttl(audience_id: str, services: ServicesDep) -> dict:
    return services.external_audiences.extend_ttl(audience_id)


@router.get("/external-audience/{audience_id}", summary="Get an external audience")
def get_external_audience(audience_id: str, services: ServicesDep) -> dict:
    return services.external_audiences.get(audience_id)


@router.patch("/external-audience/{audience_id}", summary="Update an external audience")
def update_external_audience(audience_id: str, services: ServicesDep, body: Annotated[Any, Body()]) -> dict:
    return services.external_audiences.update(audience_id, body)


@router.delete("/external-audience/{audience_id}", status_code=204, summary="Delete an external audience")
def delete_external_audience(audience_id: str, services: ServicesDep) -> Response:
    services.external_audiences.delete(audience_id)
    return Response(status_code=204)


@router.post("/external-audience/{audience_id}/runs", summary="Start an ingestion run")
def start_run(audience_id: str, services: ServicesDep, body: Annotated[Any, Body()] = None) -> dict:
    return services.external_audiences.start_run(audience_id, body)


@router.get("/external-audience/{audience_id}/runs", summary="List ingestion runs")
def list_runs(audience_id: str, services: ServicesDep) -> dict:
    return services.external_audiences.runs(audience_id)


@router.get("/external-audience/{audience_id}/runs/{run_id}", summary="Status of an ingestion run")
def get_run(audience_id: str, run_id: str, services: ServicesDep) -> dict:
    return services.external_audiences.get_run(audience_id, run_id)
