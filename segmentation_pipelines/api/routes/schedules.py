"""``/config/schedules``: list, create, get, update (JSON Patch, 204) and delete (204) schedules.

Thin over :class:`segmentation_pipelines.service.schedules.SchedulesService`; the ``schedule`` is a Quartz cron
(``"0 0 1 * * ?"``), converted to the cron Dagster runs or refused with a message naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from segmentation_pipelines.api.deps import ServicesDep

PREFIX = "/data/core/ups"

router = APIRouter(prefix=PREFIX, tags=["schedules"])


@router.get("/config/schedules", summary="List schedules")
def list_schedules(
    services: ServicesDep,
    start: Annotated[str | None, Query(description="Offset of the first schedule (default 0)")] = None,
    limit: Annotated[str | None, Query(description="Page size (default 100)")] = None,
) -> dict:
    return services.schedules.list(start=start, limit=limit)


@router.post("/config/schedules", summary="Create a schedule")
def create_schedule(
    services: ServicesDep,
    body: Annotated[Any, Body(description="name, type, properties, schedule (Quartz cron), state, timezone")],
) -> dict:
    return services.schedules.create(body)


@router.get("/config/schedules/{schedule_id}", summary="Get a schedule")
def get_schedule(schedule_id: str, services: ServicesDep) -> dict:
    return services.schedules.get(schedule_id)


@router.patch("/config/schedules/{schedule_id}", status_code=204, summary="Update a schedule (JSON Patch)")
def update_schedule(
    schedule_id: str,
    services: ServicesDep,
    body: Annotated[Any, Body(description='[{"op": "add", "path": "/state" | "/schedule", "value": ...}]')],
) -> Response:
    services.schedules.update(schedule_id, body)
    return Response(status_code=204)


@router.delete("/config/schedules/{schedule_id}", status_code=204, summary="Delete a schedule")
def delete_schedule(schedule_id: str, services: ServicesDep) -> Response:
    services.schedules.delete(schedule_id)
    return Response(status_code=204)
