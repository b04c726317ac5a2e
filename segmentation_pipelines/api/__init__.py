"""The AEP-compatible REST API: a FastAPI app over the service layer (paths, headers, errors; no business rules)."""

from segmentation_pipelines.api.app import create_app

__all__ = ["create_app"]
