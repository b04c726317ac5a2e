"""Creating segment definitions up to the platform's per-sandbox limit: does each create stay as cheap?

    .venv/bin/python benchmarks/definitions_create.py [--definitions 4000] [--window 200] [--record]

Through the in-process client, in a fresh home with one small ingested profile dataset (the PQL checker needs its
schema): ``--definitions`` creates, most of them profile conditions, every 20th reading an earlier one with
``inSegment`` (the cycle check then reads the other definitions' references). Reports the mean time of a create
over the first and the last ``--window`` creates of each kind and their ratio (the baseline is the same call in
the same run, on an almost empty catalog). Found at 4,000 definitions (issue 18's scale run): the cycle check read
every definition's body on every create, 0.25 s each by then.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from preview import load
from results_file import append_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--definitions", type=int, default=4000)
    ap.add_argument("--window", type=int, default=200)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    from segmentation_pipelines import SegmentationClient

    work = Path(tempfile.mkdtemp(prefix="sp-defs-"))
    rows = [
        {
            "identityMap": {"Email": [{"id": f"p{i}@x.com", "primary": True}]},
            "person": {"birthYear": 1950 + i},
        }
        for i in range(50)
    ]
    data = work / "people.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = load()
    plain: list[float] = []
    referencing: list[float] = []
    with SegmentationClient(home=work / "home") as client:
        ds = client.datasets.create({"name": "crm", "schema": {"name": "_xdm.context.profile"}})
        client.datasets.ingest(ds["id"], [str(data)])
        first = None
        for i in range(args.definitions):
            refers = i % 20 == 19
            pql = (
                f'inSegment("{first}") and person.birthYear > {1950 + i % 50}'
                if refers
                else (f"person.birthYear > {1950 + i % 50}")
            )
            body = {
                "name": f"bench-create-{i}",
                "expression": {"type": "PQL", "format": "pql/text", "value": pql},
                "schema": {"name": "_xdm.context.profile"},
            }
            started = time.perf_counter()
            created = client.segment_definitions.create(body)
            (referencing if refers else plain).append(time.perf_counter() - started)
            first = first or created["id"]
            if (i + 1) % 500 == 0:
                print(f"{i + 1} definitions", flush=True)
    after = load()

    w = args.window
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M UTC} — {args.definitions:,} definitions created through the client",
        "",
        f"Command: `.venv/bin/python benchmarks/definitions_create.py --definitions {args.definitions} "
        f"--window {w}`; load {before} → {after}; "
        f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores",
        "",
        "| creates | count | first (ms, mean) | last (ms, mean) | last / first |",
        "|---|---|---|---|---|",
    ]
    for label, xs in (("profile conditions", plain), ("with inSegment (every 20th)", referencing)):
        k = max(1, min(w, len(xs) // 2))
        head, tail = statistics.mean(xs[:k]) * 1000, statistics.mean(xs[-k:]) * 1000
        lines.append(f"| {label} | {len(xs):,} | {head:.1f} | {tail:.1f} | {tail / head:.2f}x |")
    table = "\n".join(lines)
    print(table)
    if args.record:
        append_result("definitions_create.md", "Creating segment definitions at scale", table)


if __name__ == "__main__":
    main()
