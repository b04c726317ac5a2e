"""``/config/schedules/add-audiences``, ``/remove-audiences``, ``/audience-map`` and ``/trigger`` (Flexible Batch
Schedules): which audiences each batch schedule evaluates, and an on-demand run of a schedule.

Thin over :mod:`segmentation_pipelines.service.schedule_audiences` (through ``services.schedules``). These are
POSTs on fixed paths; ``/config/schedules/{id}`` has no POST, so they never collide with it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from segmentation_pipelines.api.deps import ServicesDep

PREFIX = "/data/core/ups"

router = APIRouter(prefix=PREFIX + "/config/schedules", tags=["schedules"])


@router.post("/add-audiences", summary="Add audiences to a schedule")
def add_audiences(
    services: ServicesDep,
    body: Annotated[Any, Body(description='{"id": "<schedule id>", "segments": ["<definition id>", ...]}')],
) -> dict:
    return services.schedules.add_audiences(body)


@router.post("/remove-audiences", summary="Remove audiences from a schedule")
def remove_audiences(
    services: ServicesDep,
    body: Annotated[Any, Body(description='{"id": "<schedule id>", "segments": ["<definition id>", ...]}')],
) -> dict:
    return services.schedules.remove_audiences(body)


@router.post("/audience-map", summary="Which schedules evaluate these audiences")
def audience_map(
    services: ServicesDep,
    body: Annotated[Any, Body(description='{"segments": ["<definition id>", ...]}')],
) -> dict:
    return services.schedules.audience_map(body)


@router.post("/trigger", summary="Trigger a schedule now (one segment job per call)")
def trigger(
    services: ServicesDep,
    body: Annotated[Any, Body(description='{"id": "<schedule id>"}')],
) -> dict:
    return services.schedules.trigger(body)
