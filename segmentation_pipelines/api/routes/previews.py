"""``/preview`` and ``/estimate``: create, read, cancel a preview, and read its estimate (thin over
:mod:`segmentation_pipelines.service.previews`; previews run in this process, not as Dagster runs)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from segmentation_pipelines.api.deps import ServicesDep

PREFIX = "/data/core/ups"

router = APIRouter(prefix=PREFIX, tags=["previews and estimates"])


@router.post("/preview", status_code=201, summary="Create a preview (and its estimate)")
def create_preview(
    services: ServicesDep,
    response: Response,
    body: Annotated[
        Any,
        Body(
            description='{"predicateExpression": "<PQL>", "predicateType": "pql/text", '
            '"predicateModel": "_xdm.context.profile", "graphType": "pdg"} (+ "baseSegmentId" for a shadow diff)'
        ),
    ],
) -> dict:
    created = services.previews.create(body)
    response.headers["X-Location"] = f"{PREFIX}/preview/{created['previewId']}"
    return created


@router.get("/preview/{preview_id}", summary="Get a page of a preview's profiles")
def get_preview(
    preview_id: str,
    services: ServicesDep,
    offset: Annotated[str | None, Query(description="Offset of the page (default 0)")] = None,
    limit: Annotated[int | None, Query(description="Profiles per page (default 1000)")] = None,
) -> dict:
    return services.previews.get(preview_id, offset=offset, limit=limit)


@router.delete("/preview/{preview_id}", summary="Cancel or delete a preview")
def delete_preview(preview_id: str, services: ServicesDep) -> dict:
    return services.previews.delete(preview_id)


@router.get("/estimate/{estimate_id}", summary="Get the estimate of a preview")
def get_estimate(estimate_id: str, services: ServicesDep) -> dict:
    return services.estimates.get(estimate_id)
