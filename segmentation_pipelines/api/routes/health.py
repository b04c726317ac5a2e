"""``GET /health``: liveness and catalog reachability; open without a token (load balancers call it)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from sqlalchemy import text

from segmentation_pipelines.catalog import Catalog
from segmentation_pipelines.errors import ApiError
from segmentation_pipelines.version import __version__

PREFIX = ""

log = logging.getLogger(__name__)
router = APIRouter(prefix=PREFIX, tags=["health"])


@router.get("/health", summary="Service health")
def health(request: Request) -> dict:
    settings = request.app.state.settings
    try:
        with Catalog.for_url(settings.resolved_catalog_url).session() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # the catalog being down is a state to report, not a crash
        log.exception("Health check: catalog unreachable")
        raise ApiError(503, f"The catalog database is unreachable ({type(exc).__name__}).") from exc
    return {"status": "ok", "version": __version__, "catalog": "ok", "auth": bool(settings.tokens)}
