"""The FastAPI application: AEP base paths, headers, auth and errors around the routers of ``api/routes``.

Each router is included here by name (FastAPI's "bigger applications"); its AEP base path and tags are on the
``APIRouter`` itself. Every router but the health check sits behind the bearer-token check. Order matters where
paths overlap: ``/config/schedules/add-audiences`` before ``/config/schedules/{id}``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import swagger_ui_bundle
from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles

from segmentation_pipelines.api.deps import require_token
from segmentation_pipelines.api.errors import install_error_handlers
from segmentation_pipelines.api.middleware import RequestGuardMiddleware
from segmentation_pipelines.api.routes import (
    audiences,
    batch_ingestion,
    datasets,
    export_jobs,
    external_audiences,
    folders,
    health,
    merge_policies,
    previews,
    profiles,
    schedule_audiences,
    schedules,
    search,
    segment_definitions,
    segment_jobs,
)
from segmentation_pipelines.service.runner import Runner
from segmentation_pipelines.service.segment_evaluation import remove_stale_work_everywhere
from segmentation_pipelines.settings import Settings, get_settings
from segmentation_pipelines.version import __version__

log = logging.getLogger(__name__)

# Behind the bearer-token check, in inclusion order.
PROTECTED_ROUTERS = (
    datasets.router,
    batch_ingestion.router,
    merge_policies.router,
    profiles.router,
    segment_definitions.router,
    segment_jobs.router,
    audiences.router,
    folders.router,
    schedule_audiences.router,
    schedules.router,
    search.router,
    previews.router,
    export_jobs.router,
    external_audiences.router,
)


def _warn_if_open(settings: Settings) -> None:
    if not settings.tokens:
        log.warning(
            "\n%s\nSEGMENTATION_API_TOKENS is not set: the REST API accepts requests WITHOUT authentication.\n"
            "Set SEGMENTATION_API_TOKENS=<token>[,<token>...] before exposing it beyond this machine.\n%s",
            "!" * 100,
            "!" * 100,
        )


DOCS_ASSETS = "/docs-assets"


def _serve_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI with its JavaScript and CSS from the ``swagger_ui_bundle`` package (FastAPI's default
    page loads them from a CDN, so it is blank without internet)."""

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> Any:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )


def create_app(settings: Settings | None = None, run_requests: bool = False) -> FastAPI:
    """The app; ``run_requests=True`` (``serve``) also starts the runner that runs segment jobs and store
    refreshes in this process while no Dagster daemon does (``service/runner.py``, ``settings.runner``)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        _warn_if_open(settings)
        # Work folders of runs killed while this API was down (none is live unless a run holds its lock).

        remove_stale_work_everywhere(settings.data_root)
        runner = Runner(settings).start() if run_requests and settings.runner != "off" else None
        try:
            yield
        finally:
            if runner is not None:
                runner.stop()

    app = FastAPI(
        title="segmentation_pipelines",
        version=__version__,
        description="Adobe Experience Platform Segmentation Service API, open-source, on Dagster.",
        lifespan=lifespan,
        docs_url=None,  # served below from the swagger-ui-bundle package: no CDN, works offline
        redoc_url=None,
    )
    _serve_docs(app)
    app.state.settings = settings
    app.include_router(health.router)
    for router in PROTECTED_ROUTERS:
        app.include_router(router, dependencies=[Depends(require_token)])
    install_error_handlers(app)
    app.add_middleware(
        RequestGuardMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    return app
