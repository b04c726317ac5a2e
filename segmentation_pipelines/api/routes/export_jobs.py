"""``/export/jobs``: create, list (cursor paging), get and cancel export jobs; ``/export/gates/{definitionId}``
(an extension): a segment definition's publish gates. Thin over ``service/export_jobs.py``.

Creating a job never blocks: it is written ``NEW`` and a Dagster sensor (or the API's runner without a daemon)
launches its run; callers poll ``GET``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response

from segmentation_pipelines.api.deps import ServicesDep, query_of

PREFIX = "/data/core/ups"

router = APIRouter(prefix=PREFIX, tags=["export jobs"])


@router.get(
    "/export/jobs", summary="List export jobs (newest first; offset = page.pageOffset of the last page)"
)
def list_export_jobs(request: Request, services: ServicesDep) -> dict:
    return services.export_jobs.list(**query_of(request))


@router.post("/export/jobs", summary="Create an export job")
def create_export_job(
    services: ServicesDep,
    response: Response,
    body: Annotated[Any, Body(description="CreateExportJobRequest")],
) -> dict:
    job = services.export_jobs.create(body)
    response.headers["X-Location"] = f"/data/core/ups/export/jobs/{job['id']}"
    return job


@router.get("/export/jobs/{job_id}", summary="Get an export job")
def get_export_job(job_id: str, services: ServicesDep) -> dict:
    return services.export_jobs.get(job_id)


@router.delete("/export/jobs/{job_id}", summary="Cancel an export job")
def cancel_export_job(job_id: str, services: ServicesDep) -> dict:
    return services.export_jobs.delete(job_id)


@router.put(
    "/export/gates/{definition_id}", summary="Set the publish gates of a segment definition (extension)"
)
def set_gates(definition_id: str, services: ServicesDep, body: Annotated[Any, Body()]) -> dict:
    return services.export_jobs.set_gates(definition_id, body)


@router.get("/export/gates/{definition_id}", summary="Publish gates of a segment definition and their status")
def get_gates(definition_id: str, services: ServicesDep) -> dict:
    return services.export_jobs.get_gates(definition_id)


@router.delete(
    "/export/gates/{definition_id}", status_code=204, summary="Remove a definition's publish gates"
)
def delete_gates(definition_id: str, services: ServicesDep) -> None:
    services.export_jobs.delete_gates(definition_id)
