"""Catalog snapshots pinned for run workers (dagster-notes §1.2).

Definitions built from the catalog (segment assets, user schedules) read it once when the code server loads the
location (``INITIALIZATION``). The snapshot is attached as reconstruction metadata, so a run or step worker
(``RECONSTRUCTION``) rebuilds exactly the definitions the run was launched against, without reading a catalog that
may have changed since. Only ``add_to_pending_reconstruction_metadata`` propagates it (verified on 1.13.27).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext, DefinitionsLoadType


def pinned_snapshot(key: str, fetch: Callable[[], Any]) -> Any:
    """The JSON-serializable value ``fetch()`` returned when the code location loaded, under ``key``.

    Fetched (and pinned) at initialization; read back from the pinned metadata in run and step workers.
    """
    context = DefinitionsLoadContext.get()
    if context.load_type == DefinitionsLoadType.RECONSTRUCTION and key in context.reconstruction_metadata:
        return json.loads(context.reconstruction_metadata[key])
    payload = json.dumps(fetch(), sort_keys=True)
    context.add_to_pending_reconstruction_metadata(key, payload)
    return json.loads(payload)
