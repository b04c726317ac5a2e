"""Reload the Dagster code location after a catalog change that alters its definitions.

Segment definitions (and schedules) become Dagster assets and schedules when the code location loads
(``architecture.md`` §5). After a write, the webserver named by ``settings.dagster_url`` is asked to reload the
location (GraphQL ``reloadRepositoryLocation``). Requests are debounced: a burst of writes triggers one reload a
moment after the first. A failed reload is logged, never raised: the write already succeeded, and the next load
picks the change up anyway.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlparse

from segmentation_pipelines.settings import Settings

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.5

_lock = threading.Lock()
_pending: dict[tuple[str, str], threading.Timer] = {}


def reload_now(dagster_url: str, location_name: str) -> bool:
    """Reload ``location_name`` on the webserver at ``dagster_url``; True on success (failures are logged)."""
    try:
        # Imported for a reload only: every service that writes the catalog imports this module.
        from dagster_graphql import DagsterGraphQLClient, ReloadRepositoryLocationStatus

        url = urlparse(dagster_url if "://" in dagster_url else f"http://{dagster_url}")
        client = DagsterGraphQLClient(
            url.hostname or "localhost",
            port_number=url.port,
            use_https=url.scheme == "https",
            path_prefix=url.path.rstrip("/"),
            timeout=60,
        )
        info = client.reload_repository_location(location_name)
        if info.status != ReloadRepositoryLocationStatus.SUCCESS:
            log.warning(
                "reloading code location %s failed: %s", location_name, info.message or info.failure_type
            )
            return False
        return True
    except Exception as exc:  # a reload is best effort: the catalog write stands
        log.warning("reloading code location %s at %s failed: %s", location_name, dagster_url, exc)
        return False


def request_reload(settings: Settings) -> None:
    """Schedule a (debounced) reload of the code location, if a Dagster webserver is configured."""
    if not settings.dagster_url:
        return
    key = (settings.dagster_url, settings.code_location_name)
    with _lock:
        if key in _pending:
            return

        def fire() -> None:
            with _lock:
                _pending.pop(key, None)
            reload_now(*key)

        timer = threading.Timer(DEBOUNCE_SECONDS, fire)
        timer.name = "code-location-reload"
        _pending[key] = timer
        timer.start()
