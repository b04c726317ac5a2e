"""The client's declarations and the REST routes agree: every route has a client operation, and every client
operation of a resource whose routes exist points at one of them (same method, same path)."""

from __future__ import annotations

import re

import pytest

from segmentation_pipelines.api import create_app
from segmentation_pipelines.client import SegmentationClient
from segmentation_pipelines.settings import Settings

# Routes the client reaches another way (health) or not at all, on purpose.
NOT_IN_CLIENT = {("GET", "/health")}


def _normal(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path).rstrip("/") or "/"


@pytest.fixture(scope="module")
def app_routes(tmp_path_factory) -> set[tuple[str, str]]:
    app = create_app(Settings(home=tmp_path_factory.mktemp("routes") / "home"))
    return {
        (method.upper(), _normal(path))
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }


def client_routes() -> dict[tuple[str, str], str]:
    found = {}
    for attr, resource in SegmentationClient.RESOURCES.items():
        for name, operation in resource.operations().items():
            prefix = resource.prefix if operation.prefix is None else operation.prefix
            found[(operation.method, _normal(prefix + operation.path))] = f"{attr}.{name.lstrip('_')}"
    return found


def test_every_route_has_a_client_operation(app_routes):
    missing = sorted(app_routes - set(client_routes()) - NOT_IN_CLIENT)
    assert not missing, f"routes without a client operation (add one in client.py): {missing}"


def test_client_operations_of_served_resources_exist(app_routes):
    served_paths = {path for _, path in app_routes}
    wrong = []
    for (method, path), where in client_routes().items():
        # Only resources whose routes exist yet: the collection path (first two segments after the base) is served.
        collection = "/".join(path.split("/")[:6])
        if any(p.startswith(collection) for p in served_paths) and (method, path) not in app_routes:
            wrong.append((where, method, path))
    assert not wrong, f"client operations with no matching route: {sorted(wrong)}"
