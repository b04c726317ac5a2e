"""Where a preview's first page goes (issue 16): the service path in-process, on the home ``benchmarks/preview.py
--service`` built, with the service's steps timed (the sample check, the engine pass of each chunk with its own
timings, the per-chunk work, the first page's rows) and ``GET /estimate`` / ``GET /preview`` polled as a UI would.

    .venv/bin/python benchmarks/preview_profile.py benchmarks/.work/p1000000-e20000000/service/home [rounds]

Run it under the bench lock (``flock /tmp/sp-bench.lock``); the first round is the process's first preview (cold).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from preview import DEFINITION

from segmentation_pipelines import SegmentationClient
from segmentation_pipelines.engine import sampling
from segmentation_pipelines.service import previews

START = [0.0]
LOG: list[tuple] = []


def timed(module, name: str) -> None:
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        result = original(*args, **kwargs)
        inner = getattr(result, "timings", None)
        inner = {k: round(v, 3) for k, v in inner.items()} if isinstance(inner, dict) else ""
        LOG.append((name, round(t - START[0], 3), round(time.perf_counter() - t, 3), inner))
        return result

    setattr(module, name, wrapper)


def main() -> None:
    home, rounds = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3
    for name in ("ensure_sample", "external_members", "_chunk_extras", "_members_rows"):
        timed(previews, name)
    timed(sampling.engine, "evaluate")
    with SegmentationClient(home=home) as client:
        previews.PreviewsService(client.ctx).prepare_sample()
        for i in range(rounds):
            LOG.clear()
            START[0] = started = time.perf_counter()
            preview = client.previews.create({"predicateExpression": DEFINITION})
            created = time.perf_counter() - started
            first = page = asked = None
            while True:
                estimate = client.estimates.get(preview["previewId"])
                now = time.perf_counter() - started
                first = first if first is not None or not estimate["profilesReadSoFar"] else now
                if page is None and (
                    estimate["profilesMatchedSoFar"] >= 1000 or estimate["state"] == "RESULT_READY"
                ):
                    asked = time.perf_counter()
                    got = client.previews.get(preview["previewId"], offset=0, limit=1000)
                    if len(got["results"]) == 1000:
                        page = time.perf_counter() - started
                        asked = page - (asked - started)
                if estimate["state"] in ("RESULT_READY", "FAILED"):
                    break
                time.sleep(0.01)
            timings = previews._previews[preview["previewId"]].timings
            print(
                f"round {i + 1}: POST {created:.3f} s, first estimate {first:.3f} s, first page {page:.3f} s "
                f"(GET /preview took {asked:.3f} s), all read {now:.3f} s; worker {timings}"
            )
            for step in LOG:
                print("    step, started at, took, engine timings:", step)


if __name__ == "__main__":
    main()
