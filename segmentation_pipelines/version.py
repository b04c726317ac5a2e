"""The installed version of the package (what ``/health`` and the REST API's docs report)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("segmentation-pipelines")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
