"""REST routers, one module per API resource.

A module defines ``router = fastapi.APIRouter(prefix=PREFIX, tags=[...])`` with its AEP base path (``/data/core/ups``;
external audiences ``/data/core/ais``; datasets ``/data/foundation/catalog``) and is included by name in
:func:`segmentation_pipelines.api.app.create_app`. Routes get the request's scope with ``ctx: ServiceCtx`` (or
``services: ServicesDep``) from :mod:`segmentation_pipelines.api.deps` and call the service layer.
"""
