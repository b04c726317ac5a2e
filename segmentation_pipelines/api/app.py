"""The FastAPI application: AEP base paths, headers, auth and errors around the routers of ``api/routes``.

Each router is included here by name (FastAPI's "bigger applications"); its AEP base path and tags are on the
``APIRouter`` itself. Every router but the health check sits behind the bearer-token check. Order matters where
paths overlap: ``/config/schedules/add-audiences`` before ``/config/schedules/{id}``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from segmentation_pipelines import __version__
from segmentation_pipelines.api.deps import require_token
from segmentation_pipelines.api.errors import install_error_handlers
from segmentation_pipelines.api.middleware import RequestGuardMiddleware
from segmentation_pipelines.api.routes import (
    audiences,
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
from segmentation_pipelines.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Behind the bearer-token check, in inclusion order.
PROTECTED_ROUTERS = (
    datasets.router,
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


def create_app(settings: Settings | None = None, run_requests: bool = False) -> FastAPI:
    """The app; ``run_requests=True`` (``serve``) also starts the runner that runs segment jobs and store
    refreshes in this process while no Dagster daemon does (``service/runner.py``, ``settings.runner``)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        _warn_if_open(settings)
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
    )
    app.state.settings = settings
    app.include_router(health.router)
    for router in PROTECTED_ROUTERS:
        app.include_router(router, dependencies=[Depends(require_token)])
    install_error_handlers(app)
    app.add_middleware(RequestGuardMiddleware, max_body_bytes=settings.max_body_bytes)
    return app
