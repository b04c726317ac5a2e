"""The service layer: one module per API resource (validation, business rules, AEP-shaped dicts in and out).

The REST routes and the in-process Python client both call these services, so they behave the same. A service
is built from a :class:`ServiceContext` (settings, catalog, org, sandbox) and raises
:class:`segmentation_pipelines.errors.ApiError` for anything a user did wrong. ``service/services.py`` holds them all
for one scope.
"""

from segmentation_pipelines.service.context import ServiceContext

__all__ = ["ServiceContext"]
