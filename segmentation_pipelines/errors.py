"""Errors in the AEP shape.

Every failure a user can see carries an HTTP status and the AEP error body::

    {"requestId": ..., "errors": {"<status>": [{"code": ..., "message": ...}]},
     "type": "https://ns.adobe.com/aep/errors/<code>", "title": ..., "status": <status>}

Services raise :class:`ApiError`; the REST layer renders its body; the Python client raises
:class:`SegmentationError` (its base) with the same status and body, in-process and over HTTP alike.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

# Adobe's own codes where the contract documents one; ours (SEGP-...) elsewhere.
DEFAULT_CODES = {
    400: "UPAPI-113434-400",
    401: "UPAPI-113401-401",
    403: "UPAPI-113752-403",
    404: "UPAPI-113430-404",
    405: "SEGP-100405-405",
    409: "SEGP-100409-409",
    413: "SEGP-100413-413",
    415: "SEGP-100415-415",
    422: "SEGP-100422-422",
    429: "SEGP-100429-429",
    500: "SEGP-100500-500",
    503: "SEGP-100503-503",
}


def error_body(
    status: int,
    message: str,
    code: str | None = None,
    title: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    code = code or DEFAULT_CODES.get(status, f"SEGP-100{status}-{status}")
    try:
        default_title = HTTPStatus(status).phrase
    except ValueError:
        default_title = "Error"
    return {
        "requestId": request_id,
        "errors": {str(status): [{"code": code, "message": message}]},
        "type": f"https://ns.adobe.com/aep/errors/{code}",
        "title": title or default_title,
        "status": status,
    }


class SegmentationError(Exception):
    """An API error: HTTP ``status`` and the AEP error ``body``."""

    def __init__(self, status: int, body: dict[str, Any]):
        self.status = int(status)
        self.body = body
        super().__init__(f"{self.status}: {self.message}")

    @property
    def message(self) -> str:
        errors = (self.body or {}).get("errors") or {}
        for items in errors.values():
            for item in items or []:
                if item.get("message"):
                    return str(item["message"])
        return str((self.body or {}).get("title") or "error")

    @property
    def code(self) -> str | None:
        errors = (self.body or {}).get("errors") or {}
        for items in errors.values():
            for item in items or []:
                return item.get("code")
        return None


class ApiError(SegmentationError):
    """Raised by the service layer: builds the AEP body from a status and a message."""

    def __init__(self, status: int, message: str, code: str | None = None, title: str | None = None):
        super().__init__(status, error_body(status, message, code=code, title=title))


class NotFound(ApiError):
    def __init__(self, what: str, ident: Any, code: str | None = None):
        super().__init__(
            404, f"{what} '{ident}' was not found in this sandbox.", code=code, title="Not Found"
        )


class BadRequest(ApiError):
    def __init__(self, message: str, code: str | None = None):
        super().__init__(400, message, code=code, title="Bad Request")


class Conflict(ApiError):
    def __init__(self, message: str, code: str | None = None, status: int = 409):
        super().__init__(status, message, code=code)
