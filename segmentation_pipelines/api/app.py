"""The FastAPI application: AEP base paths, headers, auth and errors around the routers of ``api/routes``.

Routers are discovered: every module of :mod:`segmentation_pipelines.api.routes` is included, under its ``PREFIX``
(default ``/data/core/ups``), behind the bearer-token check unless it sets ``PUBLIC = True``.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

from fastapi import Depends, FastAPI

from segmentation_pipelines import __version__
from segmentation_pipelines.api import routes
from segmentation_pipelines.api.deps import require_token
from segmentation_pipelines.api.errors import install_error_handlers
from segmentation_pipelines.api.middleware import RequestGuardMiddleware
from segmentation_pipelines.service.runner import Runner
from segmentation_pipelines.settings import Settings, get_settings

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/data/core/ups"


def route_modules() -> list[ModuleType]:
    """Every module of ``api/routes``, sorted by name (a module that fails to import fails the app, loudly)."""
    names = sorted(
        info.name for info in pkgutil.iter_modules(routes.__path__) if not info.name.startswith("_")
    )
    return [importlib.import_module(f"{routes.__name__}.{name}") for name in names]


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
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

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
        from segmentation_pipelines.service.segment_evaluation import remove_stale_work_everywhere

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
    for module in route_modules():
        router = getattr(module, "router", None)
        if router is None:
            continue
        public = getattr(module, "PUBLIC", False)
        app.include_router(
            router,
            prefix=getattr(module, "PREFIX", DEFAULT_PREFIX),
            dependencies=[] if public else [Depends(require_token)],
        )
    install_error_handlers(app)
    app.add_middleware(
        RequestGuardMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    return app
