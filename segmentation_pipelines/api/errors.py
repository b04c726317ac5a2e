"""Every error the REST API returns, in the AEP error shape, never a traceback.

Handlers for: service errors (:class:`SegmentationError`), request validation (400 naming the field and where it
is), HTTP errors raised by the routing itself (404 unknown route, 405 wrong method) and anything unexpected (500
with a generic message; the traceback goes to the log only).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from segmentation_pipelines.errors import SegmentationError, error_body

log = logging.getLogger(__name__)

# AEP's code for an unreadable body or a missing field (returned with HTTP 400 despite the suffix).
BAD_JSON_CODE = "UPLIB-101206-500"
# An unknown path (Adobe's 404 code means "audience not found", which would mislead).
NO_ROUTE_CODE = "SEGP-100404-404"


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_response(
    status: int,
    message: str,
    request_id: str | None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = error_body(status, message, code=code, request_id=request_id)
    return JSONResponse(body, status_code=status, headers=headers)


def describe_validation_errors(errors: Sequence[dict[str, Any]]) -> tuple[str, str | None]:
    """One readable message for pydantic/FastAPI validation errors, and the AEP code to use."""
    parts = []
    code = None
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        where, path = (loc[0], loc[1:]) if loc else ("request", [])
        if err.get("type") == "json_invalid":
            position = err.get("ctx", {}).get("error")
            parts.append(
                f"Malformed JSON in the request body ({position})." if position else "Malformed JSON body."
            )
            code = BAD_JSON_CODE
            continue
        field = ".".join(path) if path else "(whole body)" if where == "body" else "(value)"
        if err.get("type") == "missing":
            code = code or BAD_JSON_CODE
        parts.append(f"{where} field '{field}': {err.get('msg', 'invalid value')}")
    return "; ".join(parts) or "Invalid request.", code


async def _segmentation_error(request: Request, exc: SegmentationError) -> JSONResponse:
    body = {**(exc.body or {}), "requestId": request_id_of(request)}
    return JSONResponse(body, status_code=exc.status)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    message, code = describe_validation_errors(exc.errors())
    return error_response(400, message, request_id_of(request), code=code)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    code = None
    if status == 404 and exc.detail == "Not Found":
        message, code = f"No route {request.method} {request.url.path}.", NO_ROUTE_CODE
    elif status == 400 and exc.detail == "There was an error parsing the body":
        # FastAPI's answer when json.loads fails other than by syntax (nesting too deep, bad encoding).
        message, code = (
            "The request body could not be read as JSON (bad encoding or nested too deeply).",
            BAD_JSON_CODE,
        )
    elif status == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    return error_response(
        status, message, request_id_of(request), code=code, headers=getattr(exc, "headers", None)
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    rid = request_id_of(request)
    log.exception("Unhandled error on %s %s (request id %s)", request.method, request.url.path, rid)
    # This handler runs outside the middleware stack, so it sets the request-id header itself.
    headers = {"x-request-id": rid} if rid else None
    return error_response(
        500, f"Internal server error (request id {rid}); see the server log.", rid, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SegmentationError, _segmentation_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
