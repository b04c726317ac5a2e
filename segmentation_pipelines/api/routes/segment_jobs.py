"""``/segment/jobs``: create, list, get, cancel (DELETE) and bulk-get segment jobs (thin over the service).

Creating a job never blocks: it is written ``NEW`` and a Dagster sensor launches its run; callers poll ``GET``.
``POST /segment/jobs?evaluationTime=<ISO 8601>`` fixes the evaluation time (default: when the run is launched).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from segmentation_pipelines.api.deps import ServicesDep, query_of

PREFIX = "/data/core/ups"

router = APIRouter(prefix=PREFIX, tags=["segment jobs"])


@router.get("/segment/jobs", summary="List segment jobs")
def list_segment_jobs(request: Request, services: ServicesDep) -> dict:
    return services.segment_jobs.list(**query_of(request))


@router.post("/segment/jobs", summary="Create a segment job")
def create_segment_job(
    services: ServicesDep,
    body: Annotated[
        Any, Body(description='[{"segmentId": "<definition id>"}, ...] ("*" = every batch definition)')
    ],
    evaluation_time: Annotated[
        str | None,
        Query(alias="evaluationTime", description="Evaluation time, ISO 8601 (default: launch time)"),
    ] = None,
) -> dict:
    return services.segment_jobs.create(body, evaluation_time=evaluation_time)


@router.post("/segment/jobs/bulk-get", status_code=207, summary="Get several segment jobs")
def bulk_get_segment_jobs(services: ServicesDep, body: Annotated[Any, Body()]) -> dict:
    return services.segment_jobs.bulk_get(body)


@router.get("/segment/jobs/{job_id}", summary="Get a segment job")
def get_segment_job(job_id: str, services: ServicesDep) -> dict:
    return services.segment_jobs.get(job_id)


@router.delete("/segment/jobs/{job_id}", summary="Cancel a segment job")
def cancel_segment_job(job_id: str, services: ServicesDep) -> dict:
    return services.segment_jobs.delete(job_id)
