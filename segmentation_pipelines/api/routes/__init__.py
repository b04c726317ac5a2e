"""REST routers, one module per API resource.

Every module here is included by :func:`segmentation_pipelines.api.app.create_app` automatically. A module defines
``router = fastapi.APIRouter()`` and may set:

* ``PREFIX`` - the AEP base path its routes live under (default ``"/data/core/ups"``; external audiences use
  ``"/data/core/ais"``, datasets ``"/data/foundation/catalog"``);
* ``PUBLIC = True`` - no bearer token needed (only the health route).

Routes get the request's scope with ``ctx: ServiceCtx`` (or ``services: ServicesDep``) from
:mod:`segmentation_pipelines.api.deps` and call the service layer.
"""
