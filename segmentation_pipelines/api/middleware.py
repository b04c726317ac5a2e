"""ASGI middleware run before routing: request ids, body size limit, body content type.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so that the body is read once, bounded, and replayed to the app.
A Batch Ingestion upload (``PUT /data/foundation/import/batches/.../files/...``) is the one exception: its body is
a file of any type, so it is not buffered but streamed through to the app, counted against its own limit.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from segmentation_pipelines.errors import ApiError, error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "x-request-id"
# A client's request id is echoed only if it is a sane token (it lands in bodies and logs).
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# application/json, and JSON flavours such as application/json-patch+json.
_JSON_TYPE_RE = re.compile(r"^application/([a-z0-9.\-]+\+)?json(-patch\+json)?$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_UPLOAD_RE = re.compile(r"^/data/foundation/import/batches/[^/]+/datasets/[^/]+/files/[^/]+$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _send_error(send: Send, status: int, message: str, request_id: str) -> None:
    payload = json.dumps(error_body(status, message, request_id=request_id)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (REQUEST_ID_HEADER.encode(), request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RequestGuardMiddleware:
    """Assigns the request id, and rejects bodies that are too large (413) or not JSON (415) before routing."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_upload_bytes: int | None = None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes or max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        given = _header(scope, REQUEST_ID_HEADER.encode())
        request_id = given if given and _REQUEST_ID_RE.match(given) else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER.encode()
                ]
                message["headers"] = [*headers, (REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send_with_id)
            return

        upload = scope["method"] == "PUT" and bool(_UPLOAD_RE.match(scope.get("path", "")))
        limit = self.max_upload_bytes if upload else self.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _send_error(send, 400, f"Invalid Content-Length header '{declared[:40]}'.", request_id)
                return
            if int(declared) > limit:
                await _send_error(send, 413, self._too_large(limit), request_id)
                return

        if upload:
            await self.app(scope, self._counted(receive, limit), send_with_id)
            return

        # Read the whole body (bounded), whatever Content-Length claimed, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _send_error(send, 413, self._too_large(self.max_body_bytes), request_id)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)

        if body:
            content_type = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
            if not _JSON_TYPE_RE.match(content_type):
                shown = content_type or "none"
                await _send_error(
                    send,
                    415,
                    f"Content-Type must be application/json for a request body (got {shown}).",
                    request_id,
                )
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_id)

    @staticmethod
    def _counted(receive: Receive, limit: int) -> Receive:
        """``receive`` that ends the request (as a client disconnect) once more than ``limit`` bytes arrived; the
        upload's partial file is then discarded by the route (it is written aside)."""
        size = 0

        async def counted() -> Message:
            nonlocal size
            message = await receive()
            size += len(message.get("body", b""))
            if size > limit:
                raise UploadTooLarge(limit)
            return message

        return counted

    @staticmethod
    def _too_large(limit: int) -> str:
        return f"Request body larger than the limit of {limit} bytes."


class UploadTooLarge(ApiError):
    """An upload's body passed ``max_upload_bytes`` while streaming (rendered as 413 by the error handlers)."""

    def __init__(self, limit: int):
        super().__init__(413, f"Request body larger than the limit of {limit} bytes.")
