"""The app's wiring is explicit (api/app.py includes each router by name); this keeps it whole: every route module's
routes are served, with the bearer-token check on every one but the health check."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi.routing import APIRoute

from segmentation_pipelines.api import routes
from segmentation_pipelines.api.app import create_app


def _served(app) -> set[tuple[str, str]]:
    """(method, path) of every operation in the app's own OpenAPI document."""
    return {(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops}


def test_every_route_module_is_included(settings):
    served = _served(create_app(settings))
    for info in pkgutil.iter_modules(routes.__path__):
        module = importlib.import_module(f"{routes.__name__}.{info.name}")
        declared = [r for r in module.router.routes if isinstance(r, APIRoute) and r.include_in_schema]
        assert declared, f"api/routes/{info.name}.py declares no route"
        for route in declared:
            for method in route.methods:
                assert (method, route.path) in served, f"{info.name}: {method} {route.path} is not included"


def test_only_health_is_public(settings, monkeypatch):
    settings = settings.model_copy(update={"api_tokens": "secret"})
    from fastapi.testclient import TestClient

    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/data/core/ups/segment/definitions").status_code == 401
        assert client.get("/data/core/ais/external-audience/x").status_code == 401
        assert client.get("/data/foundation/catalog/dataSets").status_code == 401
