"""``/folders`` (an extension): folders that segment definitions and audiences are filed in (``folderId``), which
segment search lists and walks. Thin over :class:`segmentation_pipelines.service.folders.FoldersService`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response

from segmentation_pipelines.api.deps import ServicesDep, query_of

PREFIX = "/data/core/ups"

router = APIRouter(prefix=PREFIX + "/folders", tags=["folders"])


@router.post("", summary="Create a folder")
def create_folder(
    services: ServicesDep,
    body: Annotated[
        Any, Body(description='{"name": ..., "parentFolderId": "root", "namespace": "AEPSegments"}')
    ],
) -> dict:
    return services.folders.create(body)


@router.get("", summary="List folders (filters: namespace, parentFolderId)")
def list_folders(request: Request, services: ServicesDep) -> dict:
    return services.folders.list(**query_of(request))


@router.get("/{folder_id}", summary="Get a folder")
def get_folder(folder_id: str, services: ServicesDep) -> dict:
    return services.folders.get(folder_id)


@router.patch("/{folder_id}", summary="Rename or move a folder (JSON Patch)")
def update_folder(
    folder_id: str,
    services: ServicesDep,
    body: Annotated[Any, Body(description='[{"op": "replace", "path": "/name" | "/parentFolderId", ...}]')],
) -> dict:
    return services.folders.update(folder_id, body)


@router.delete("/{folder_id}", status_code=204, summary="Delete an empty folder")
def delete_folder(folder_id: str, services: ServicesDep) -> Response:
    services.folders.delete(folder_id)
    return Response(status_code=204)
