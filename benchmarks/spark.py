"""Benchmark of the Spark engine against DuckDB on one machine (issue 19).

    .venv/bin/python benchmarks/spark.py [--profiles 1000000] [--events 20000000] [--master local[2]] [--record]

The store and the 100 definitions of ``benchmarks/evaluation.py`` (same generator, same seed, same folder under
``benchmarks/.data/``). Each measurement runs in a fresh subprocess (``evaluation.measure``): DuckDB (its default
threads, all cores), then Spark on ``--master`` (a new JVM: its start is measured apart, as ``session``). Both
outputs are kept and compared pair by pair (the engines must select the same members), then deleted. The machine
is shared: ``uptime``'s load is recorded before and after each measurement.

``--record`` appends the table to ``benchmarks/results/spark.md``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import evaluation  # benchmarks/ is on sys.path when a benchmark runs
from results_file import append_result


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--definitions", type=int, default=100)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    folder = evaluation.DATA / f"p{args.profiles}-e{args.events}"
    subprocess.run(
        [
            sys.executable,
            evaluation.__file__,
            "--prepare",
            "--profiles",
            str(args.profiles),
            "--events",
            str(args.events),
        ],
        check=True,
    )
    os.environ["SEGMENTATION_SPARK_MASTER"] = args.master  # read by the Spark worker's session
    defs = evaluation.definitions(args.definitions)
    results = {}
    for engine in ("duckdb", "spark"):
        before = load()
        t = time.perf_counter()
        r = evaluation.measure(engine, defs, folder, keep_output=True)
        r["wall"] = time.perf_counter() - t
        r["load"] = (before, load())
        print(engine, r, flush=True)
        results[engine] = r
    same = None
    if all("output" in r for r in results.values()):
        import duckdb

        a, b = results["duckdb"]["output"], results["spark"]["output"]
        q = f"SELECT count(*) FROM ((SELECT * FROM '{a}' EXCEPT ALL SELECT * FROM '{b}') UNION ALL (SELECT * FROM '{b}' EXCEPT ALL SELECT * FROM '{a}'))"
        same = duckdb.sql(q).fetchall()[0][0] == 0
        for r in results.values():
            Path(r["output"]).unlink(missing_ok=True)
    d, s = results["duckdb"], results["spark"]
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {args.profiles:,} profiles, {args.events:,} events, "
        f"{args.definitions} definitions, {os.cpu_count()} cores (shared)",
        "",
        f"Command: `.venv/bin/python benchmarks/spark.py --profiles {args.profiles} --events {args.events} "
        f"--definitions {args.definitions} --master {args.master}`",
        "",
        "| engine | one job (s) | of which JVM start (s) | without it (s) | peak RSS, Python (MB) | pairs | load before → after |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in (("duckdb", d), (f"spark {args.master}", s)):
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | | | | {r['load'][0]} → {r['load'][1]} |")
            continue
        session = r["timings"].get("session", 0.0)
        lines.append(
            f"| {name} | {r['seconds']:.1f} | {session:.1f} | {r['seconds'] - session:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{r['members']:,} | {r['load'][0]} → {r['load'][1]} |"
        )
    if "error" not in d and "error" not in s:
        ratio = (s["seconds"] - s["timings"].get("session", 0.0)) / d["seconds"]
        per_core = args.events / (s["seconds"] - s["timings"].get("session", 0.0)) / 2
        lines += [
            "",
            f"Spark / DuckDB (without the JVM start): {ratio:.1f}x. Same pairs on both engines: {same}. "
            f"Spark's throughput: {per_core / 1e6:.2f}M events per core-second (2 cores); DuckDB's: "
            f"{args.events / d['seconds'] / (os.cpu_count() or 1) / 1e6:.2f}M.",
            "",
            f"duckdb phases (s): {d['timings']}",
            f"spark phases (s): {s['timings']}",
        ]
    table = "\n".join(lines)
    print(table)
    if args.record:
        print(
            "recorded in",
            append_result("spark.md", "Spark engine against DuckDB (benchmarks/spark.py)", table),
        )


if __name__ == "__main__":
    main()
