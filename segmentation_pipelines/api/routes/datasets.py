"""``/data/foundation/catalog``: datasets, batches (ingestion from the landing area) and the union schema.

Thin over :class:`segmentation_pipelines.service.datasets.DatasetsService`. Ingestion reads files of the sandbox's
landing area: ``POST /dataSets/{id}/batches`` with ``{"paths": ["crm.parquet", ...]}`` (relative to the landing
folder; uploads arrive there through ``/data/foundation/import/batches``, see ``batch_ingestion.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from segmentation_pipelines.api.deps import ServicesDep
from segmentation_pipelines.errors import BadRequest

PREFIX = "/data/foundation/catalog"

router = APIRouter(prefix=PREFIX, tags=["datasets"])


@router.get("/schema", summary="Union schema of every profile dataset and every experience-event dataset")
def union_schema(services: ServicesDep) -> dict:
    return services.datasets.schema()


@router.get("/dataSets", summary="List datasets (an object keyed by dataset id)")
def list_datasets(
    services: ServicesDep,
    name: Annotated[str | None, Query()] = None,
    xdmClass: Annotated[
        str | None, Query(description="_xdm.context.profile | _xdm.context.experienceevent")
    ] = None,  # noqa: N803
    start: Annotated[str | None, Query()] = None,
    limit: Annotated[str | None, Query()] = None,
) -> dict:
    return services.datasets.list(name=name, xdmClass=xdmClass, start=start, limit=limit)


@router.post("/dataSets", summary="Create a dataset")
def create_dataset(
    services: ServicesDep,
    body: Annotated[
        Any, Body(description='{"name": ..., "xdmClass": "_xdm.context.profile"} (or schemaRef.id)')
    ],
) -> dict:
    return services.datasets.create(body)


@router.get("/dataSets/{dataset_id}", summary="Get a dataset")
def get_dataset(dataset_id: str, services: ServicesDep) -> dict:
    return services.datasets.get(dataset_id)


@router.delete("/dataSets/{dataset_id}", status_code=204, summary="Delete a dataset and its batches")
def delete_dataset(dataset_id: str, services: ServicesDep) -> Response:
    services.datasets.delete(dataset_id)
    return Response(status_code=204)


@router.post(
    "/dataSets/{dataset_id}/batches",
    summary="Ingest Parquet / JSON Lines files of the landing area as a batch",
)
def ingest_batch(
    dataset_id: str,
    services: ServicesDep,
    body: Annotated[
        Any, Body(description='{"paths": ["crm.parquet", ...]} (relative to the sandbox landing folder)')
    ],
) -> dict:
    if not isinstance(body, dict) or "paths" not in body:
        raise BadRequest('The body must be {"paths": [<file of the landing area>, ...]}.')
    return services.datasets.ingest(dataset_id, body["paths"])


@router.get("/dataSets/{dataset_id}/batches", summary="List a dataset's batches (keyed by batch id)")
def list_batches(dataset_id: str, services: ServicesDep) -> dict:
    return services.datasets.batches(dataset_id)


@router.get("/batches/{batch_id}", summary="Get a batch: status, row counts, rejected-row counts")
def get_batch(batch_id: str, services: ServicesDep) -> dict:
    return services.datasets.get_batch(batch_id)


@router.delete("/batches/{batch_id}", status_code=204, summary="Delete a batch and its rows")
def delete_batch(batch_id: str, services: ServicesDep) -> Response:
    services.datasets.delete_batch(batch_id)
    return Response(status_code=204)


@router.get("/batches/{batch_id}/rejects", summary="Rejected rows of a batch with their reasons")
def get_rejects(
    batch_id: str, services: ServicesDep, limit: Annotated[int, Query(ge=1, le=10000)] = 100
) -> dict:
    return {"batchId": batch_id, "rejects": services.datasets.rejects(batch_id, limit=limit)}
