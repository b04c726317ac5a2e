"""segmentation_pipelines: the Adobe Experience Platform Segmentation Service API, open-source, on Dagster.

Public names: :class:`SegmentationClient` (the API in Python, in-process or over HTTP), :class:`SegmentationError`
(the one exception it raises: HTTP status + AEP error body), :class:`ApiError` (raised by services) and
``__version__``. The client is imported on first use so that ``import segmentation_pipelines.pql`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from segmentation_pipelines.errors import ApiError, SegmentationError
from segmentation_pipelines.version import __version__

if TYPE_CHECKING:
    from segmentation_pipelines.client import SegmentationClient

__all__ = ["ApiError", "SegmentationClient", "SegmentationError", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "SegmentationClient":
        # Imported on first use: `import segmentation_pipelines.pql` must not load the services and Dagster.
        from segmentation_pipelines.client import SegmentationClient

        return SegmentationClient
    raise AttributeError(f"module 'segmentation_pipelines' has no attribute '{name}'")
