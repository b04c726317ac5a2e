"""A separate OS process writing the catalog, started by test_concurrency.py (``python _worker.py MODE ...``).

Every worker first waits at a file barrier so that all of them start writing at the same moment.

* ``upgrade URL BARRIER WORKER``: open the catalog (which migrates it) and add one dataset row.
* ``write URL BARRIER WORKER ROWS INCREMENTS COUNTER_ID``: interleave ROWS inserts (one transaction each) with
  INCREMENTS read-modify-write increments of the counter row's ``body["count"]`` (locked with ``for_update``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from segmentation_pipelines.catalog import Catalog, Repository
from segmentation_pipelines.catalog.models import Dataset, SegmentJob

ORG = "test@AdobeOrg"


def wait_at_barrier(barrier: Path, worker: str) -> None:
    (barrier / f"ready.{worker}").touch()
    deadline = time.monotonic() + 60
    while not (barrier / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit("barrier timeout")
        time.sleep(0.005)


def upgrade(url: str, barrier: Path, worker: str) -> None:
    wait_at_barrier(barrier, worker)
    catalog = Catalog(url)
    with catalog.session() as s:
        Repository(s, Dataset, ORG, "prod").add(name=f"from-{worker}", xdm_class="x", body={"worker": worker})
    catalog.dispose()


def write(url: str, barrier: Path, worker: str, rows: int, increments: int, counter_id: str) -> None:
    catalog = Catalog(url)
    wait_at_barrier(barrier, worker)
    for i in range(max(rows, increments)):
        if i < rows:
            with catalog.session() as s:
                Repository(s, SegmentJob, ORG, "prod").add(
                    status="NEW", attempt=0, body={"worker": worker, "i": i}
                )
        if i < increments:
            with catalog.session() as s:
                repo = Repository(s, Dataset, ORG, "prod")
                counter = repo.get(counter_id, for_update=True)
                count = counter.body["count"]
                # Widen the window between read and write: without the lock, another process would write in it.
                time.sleep(0.0005)
                repo.update(counter, body={**counter.body, "count": count + 1, "last": worker})
    catalog.dispose()


if __name__ == "__main__":
    mode, url, barrier, worker, *rest = sys.argv[1:]
    if mode == "upgrade":
        upgrade(url, Path(barrier), worker)
    else:
        write(url, Path(barrier), worker, int(rest[0]), int(rest[1]), rest[2])
