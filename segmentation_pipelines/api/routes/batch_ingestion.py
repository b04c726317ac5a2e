"""``/data/foundation/import``: the Batch Ingestion API paths, how a remote caller's files reach its landing area.

``POST /batches`` opens a batch for a dataset, ``PUT /batches/{batchId}/datasets/{datasetId}/files/{fileName}``
streams one file (the raw body, any content type) into ``<landing>/batches/<batchId>/``, and
``POST /batches/{batchId}?action=COMPLETE`` ingests the uploaded files (the answer is the ingested batch, as
``POST /dataSets/{id}/batches`` returns it). The body-size middleware lets the upload stream (its own limit,
``settings.max_upload_bytes``); nothing else of the API takes a non-JSON body.
"""

from __future__ import annotations

from typing import Annotated, Any

from anyio import from_thread
from fastapi import APIRouter, Body, Query, Request
from starlette.concurrency import run_in_threadpool

from segmentation_pipelines.api.deps import ServicesDep
from segmentation_pipelines.errors import BadRequest

PREFIX = "/data/foundation/import"
UPLOAD_PATH = "/batches/{batch_id}/datasets/{dataset_id}/files/{file_name}"

router = APIRouter(prefix=PREFIX, tags=["batch ingestion"])


@router.post("/batches", summary="Open a batch to upload files into")
def create_batch(
    services: ServicesDep,
    body: Annotated[
        Any, Body(description='{"datasetId": ..., "inputFormat": {"format": "json" | "parquet"}}')
    ],
) -> dict:
    return services.datasets.create_batch(body)


@router.put(
    UPLOAD_PATH,
    summary="Upload one file of an open batch (the request body is the file)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload_file(
    batch_id: str, dataset_id: str, file_name: str, request: Request, services: ServicesDep
) -> dict:
    stream = request.stream()

    def chunks():  # the body, pulled chunk by chunk from the event loop by the worker thread writing the file
        while True:
            try:
                yield from_thread.run(stream.__anext__)
            except StopAsyncIteration:
                return

    return await run_in_threadpool(services.datasets.upload_file, batch_id, dataset_id, file_name, chunks())


@router.post("/batches/{batch_id}", summary="Complete a batch (action=COMPLETE): ingest its uploaded files")
def batch_action(
    batch_id: str,
    services: ServicesDep,
    action: Annotated[str, Query(description="COMPLETE")],
) -> dict:
    if action.upper() != "COMPLETE":
        raise BadRequest(f"action: '{action[:40]}' is not supported; use action=COMPLETE.")
    return services.datasets.complete_batch(batch_id)
