"""Running a long DuckDB statement so that a cancel stops it within seconds (dagster-notes.md §3.4).

The statement runs in a worker thread; the calling thread polls, so it stays responsive to Dagster's interrupt
(KeyboardInterrupt) and to ``should_cancel()``; either makes it call ``interrupt()`` on the connection and raise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from segmentation_pipelines.engine.model import EvaluationCancelled

POLL_SECONDS = 0.1


def run_interruptible(
    work: Callable[[], Any], interrupt: Callable[[], None], should_cancel: Callable[[], bool] | None = None
) -> Any:
    """Run ``work()`` in a thread; on cancel or KeyboardInterrupt call ``interrupt()`` and raise."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = work()
        except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
            out["error"] = e

    t = threading.Thread(target=target, daemon=True, name="engine-query")
    t.start()
    try:
        while t.is_alive():
            t.join(POLL_SECONDS)
            if should_cancel is not None and t.is_alive() and should_cancel():
                interrupt()
                t.join(30)
                raise EvaluationCancelled("evaluation cancelled")
    except BaseException:
        if t.is_alive():
            interrupt()
            t.join(30)
        raise
    if "error" in out:
        raise out["error"]
    return out.get("value")
