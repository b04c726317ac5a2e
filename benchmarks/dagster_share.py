"""Dagster's own cost per segment definition in a segment job (issue 18, "Dagster's share").

    flock /tmp/sp-bench.lock .venv/bin/python benchmarks/dagster_share.py [--definitions 20,100,400] [--rounds 2]
                                                                          [--profile FILE] [--work DIR] [--record]
                                                                          [--without-held-index]

A home with a tiny profile store (40 people, 40 events: the evaluation itself is nearly free), ``N`` definitions
created through the in-process client, then per round one segment job over all of them
(``client.segment_jobs.create(..., wait=True)``). Reports, per ``N``: the job's wall time, its
``metrics.phasesInMs`` ``dagsterLaunch`` / ``dagsterFinish`` (what Dagster costs around the evaluation) and the
events the run wrote to the Dagster instance's event log, by type (``instance.get_records_for_run``), with the
load average before and after. ``--profile FILE`` writes a cProfile of the last round of the largest ``N``.

``--without-held-index``: the baseline, Dagster's SQLite event index not held open during the run
(``segmentation_pipelines/dagster_sqlite.py``). With ``DAGSTER_PG_URL`` set (and a fresh ``--work``) the runs write
to the PostgreSQL instance instead; the heading says which.

The figures at 100k profiles, with the real evaluation, come from ``benchmarks/segment_job.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import shutil
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from preview import load
from results_file import append_result

WHEN = datetime(2026, 3, 1, tzinfo=UTC)
COUNTRIES = ["US", "DE", "FR", "GB"]


def tiny_home(home: Path) -> None:
    """40 people and 40 purchases, ingested through the in-process client (once)."""
    from segmentation_pipelines import SegmentationClient

    if (home / "ready").exists():
        return
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    people, events = [], []
    for i in range(40):
        ident = {"Email": [{"id": f"p{i}@x.com", "primary": True}]}
        people.append(
            {
                "identityMap": ident,
                "homeAddress": {"countryCode": COUNTRIES[i % 4]},
                "loyalty": {"tier": "gold", "points": i * 10},
            }
        )
        events.append(
            {
                "identityMap": ident,
                "_id": f"e{i}",
                "timestamp": f"2026-02-{1 + i % 27:02d}T10:00:00Z",
                "eventType": "commerce.purchases",
                "commerce": {"order": {"priceTotal": float(i)}},
            }
        )
    files = home / "files"
    files.mkdir()
    (files / "people.json").write_text("".join(json.dumps(r) + "\n" for r in people))
    (files / "events.json").write_text("".join(json.dumps(r) + "\n" for r in events))
    with SegmentationClient(home=home / "home") as client:
        crm = client.datasets.create({"name": "crm", "schema": {"name": "_xdm.context.profile"}})
        web = client.datasets.create({"name": "web", "schema": {"name": "_xdm.context.experienceevent"}})
        client.datasets.upload(crm["id"], [files / "people.json"])
        client.datasets.upload(web["id"], [files / "events.json"])
    (home / "ready").write_text("")


def ensure_definitions(client, n: int) -> list[str]:
    existing = {d["name"]: d["id"] for d in client.segment_definitions.list(limit=1000)["segments"]}
    ids = []
    for i in range(n):
        name = f"Share {i:04d}"
        if name not in existing:
            pql = f'homeAddress.countryCode = "{COUNTRIES[i % 4]}" and loyalty.points >= {i % 400}'
            existing[name] = client.segment_definitions.create(
                {"name": name, "expression": {"type": "PQL", "format": "pql/text", "value": pql}}
            )["id"]
        ids.append(existing[name])
    return ids


def events_by_type(client, job_id: str) -> Counter:
    """The events of the job's Dagster run(s), by type."""
    import dagster as dg

    from segmentation_pipelines.dagster_launcher import instance_for
    from segmentation_pipelines.launcher import TAG_JOB_ID

    instance = instance_for(client.ctx.settings)
    counts: Counter = Counter()
    for run in instance.get_runs(filters=dg.RunsFilter(tags={TAG_JOB_ID: job_id})):
        counts.update(run_events(instance, run.run_id))
    return counts


def run_events(instance, run_id: str) -> Counter:
    counts: Counter = Counter()
    cursor = None
    while True:
        page = instance.get_records_for_run(run_id, cursor=cursor, limit=1000)
        for record in page.records:
            entry = record.event_log_entry
            counts[entry.dagster_event.event_type_value if entry.is_dagster_event else "log message"] += 1
        cursor = page.cursor
        if not page.has_more:
            return counts


def instance_kind() -> str:
    """Which Dagster instance the runs wrote to, as the heading says it."""
    import os

    if os.environ.get("DAGSTER_PG_URL"):
        return (
            f"PostgreSQL instance, DAGSTER_EVENT_BATCH_SIZE={os.environ.get('DAGSTER_EVENT_BATCH_SIZE', '0')}"
        )
    return "SQLite instance"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--definitions", default="20,100,400", help="comma-separated counts")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / ".work" / "dagster-share")
    ap.add_argument("--profile", type=Path, help="cProfile output of the largest count's last round")
    ap.add_argument("--record", action="store_true")
    ap.add_argument(
        "--without-held-index",
        action="store_true",
        help="baseline: Dagster's SQLite event index is not held open during the run (dagster_sqlite.py)",
    )
    args = ap.parse_args()
    if args.without_held_index:
        from segmentation_pipelines import dagster_sqlite

        dagster_sqlite.event_index_path = lambda instance: None  # nothing to hold

    from segmentation_pipelines import SegmentationClient

    counts = [int(n) for n in args.definitions.split(",")]
    tiny_home(args.work)
    rows = []
    with SegmentationClient(home=args.work / "home") as client:
        for n in counts:
            ids = ensure_definitions(client, n)
            body = [{"segmentId": i} for i in ids]
            for r in range(args.rounds):
                before = load()
                profiler = (
                    cProfile.Profile() if args.profile and n == counts[-1] and r == args.rounds - 1 else None
                )
                started = time.perf_counter()
                if profiler:
                    profiler.enable()
                job = client.segment_jobs.create(body, evaluation_time=WHEN + dt.timedelta(days=r), wait=True)
                if profiler:
                    profiler.disable()
                    profiler.dump_stats(args.profile)
                seconds = time.perf_counter() - started
                assert job["status"] == "SUCCEEDED", job.get("errors")
                job = client.segment_jobs.get(job["id"])
                phases = job["metrics"]["phasesInMs"]
                events = events_by_type(client, job["id"])
                row = {
                    "definitions": n,
                    "round": r + 1,
                    "job_s": seconds,
                    "launch_s": phases["dagsterLaunch"] / 1000,
                    "finish_s": phases["dagsterFinish"] / 1000,
                    "events": dict(events),
                    "load": (before, load()),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"### {stamp} — Dagster's share (tiny store), {cores} cores, {instance_kind()}",
        "",
        f"Command: `{'DAGSTER_PG_URL=... ' if 'PostgreSQL' in instance_kind() else ''}flock /tmp/sp-bench.lock .venv/bin/python benchmarks/dagster_share.py --definitions "
        f"{args.definitions} --rounds {args.rounds}{' --without-held-index' if args.without_held_index else ''}`",
        "",
        "| definitions | round | job (s) | dagsterLaunch (s) | dagsterFinish (s) | per definition (ms) | events "
        "in the run | by type | load before → after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        total = sum(r["events"].values())
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["events"].items(), key=lambda kv: -kv[1]))
        per = (r["launch_s"] + r["finish_s"]) * 1000 / r["definitions"]
        lines.append(
            f"| {r['definitions']} | {r['round']} | {r['job_s']:.1f} | {r['launch_s']:.1f} | {r['finish_s']:.1f} "
            f"| {per:.0f} | {total} | {kinds} | {r['load'][0]} → {r['load'][1]} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.record:
        print("recorded in", append_result("dagster_share.md", "Dagster's share of a segment job", table))


if __name__ == "__main__":
    main()
