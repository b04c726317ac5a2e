"""Benchmark of the profile store: generate, ingest and build (identity graph, keyed events, merged profiles) the
demo data at a given size, and identity stitching time as the data grows (1x, 2x, 4x).

    .venv/bin/python benchmarks/profile_store.py --profiles 1000000 --events 20000000 --scales 1,2,4

Every phase runs in a fresh process, so its peak memory (max RSS, DuckDB included) is its own. The scaling runs
generate and ingest ``profiles/4 * k`` people and ``events/4 * k`` events for k in ``--scales`` (the largest is the
main size) and time the identity graph build on each. Results are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import resource
import shutil
import sys
import time
from pathlib import Path

AS_OF = dt.datetime(2026, 11, 1)


def _child(conn, fn, args):
    started = time.perf_counter()
    try:
        result = fn(*args)
        error = None
    except Exception as e:  # report, do not hang the parent
        result, error = None, f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    conn.send((result, error, seconds, peak_mb))
    conn.close()


def in_process(fn, *args):
    """Run ``fn(*args)`` in a fresh process: (result, seconds, peak RSS MiB)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, fn, args))
    proc.start()
    result, error, seconds, peak = parent.recv()
    proc.join()
    if error:
        raise RuntimeError(error)
    return result, seconds, peak


# ------------------------------------------------------------------ phases (run in child processes)


def _services(home: str):
    from segmentation_pipelines.service.context import ServiceContext, Services
    from segmentation_pipelines.settings import get_settings

    return Services(ServiceContext.create(get_settings(home=home, catalog_url=None)))


def phase_generate(data_dir: str, profiles: int, events: int) -> dict:
    from segmentation_pipelines.profiles.demo import generate_demo

    files = generate_demo(data_dir, profiles=profiles, events=events, seed=42, as_of=AS_OF)
    return {k: v for k, v in files.as_dict().items() if k != "files"}


def phase_ingest(home: str, data_dir: str) -> dict:
    services = _services(home)
    out = {}
    for kind, cls in (
        ("crm", "_xdm.context.profile"),
        ("loyalty", "_xdm.context.profile"),
        ("events", "_xdm.context.experienceevent"),
    ):
        ds = services.datasets.create({"name": kind, "xdmClass": cls})
        files = sorted(str(p) for p in (Path(data_dir) / kind).glob("part-*.parquet"))
        batch = services.datasets.ingest(ds["id"], files)
        out[kind] = batch["rowCount"]
    return out


def _batches(home: str):
    from segmentation_pipelines.profiles.layout import StoreLayout

    services = _services(home)
    return services, StoreLayout(services.ctx.sandbox_root), services.datasets.successful_batches()


def phase_identity(home: str) -> dict:
    from segmentation_pipelines.profiles.store import build_identity_graph_store

    _, layout, b = _batches(home)
    return build_identity_graph_store(layout, b["profile"], b["experienceevent"])


def phase_events(home: str) -> dict:
    from segmentation_pipelines.profiles.store import build_events_store

    _, layout, b = _batches(home)
    return build_events_store(layout, b["experienceevent"])


def phase_merge(home: str, precedence: bool) -> dict:
    from segmentation_pipelines.profiles.store import build_merged_profiles

    services, layout, b = _batches(home)
    if precedence:
        ids = [d["id"] for d in services.datasets.list().values() if d["xdmClass"] == "_xdm.context.profile"]
        policy = {"id": "bench-precedence", "attributeMerge": {"type": "dataSetPrecedence", "order": ids}}
    else:
        policy = services.merge_policies.ensure_default()
    return build_merged_profiles(layout, b["profile"], policy)


# ------------------------------------------------------------------ driver


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument(
        "--scales", default="1,2,4", help="identity-scaling points, as multiples of the size / max"
    )
    ap.add_argument("--work", default="/tmp/sp-bench-profile-store", help="scratch folder (deleted first)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args(argv)

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = []

    def record(name, fn, *fargs):
        result, seconds, peak = in_process(fn, *fargs)
        rows.append((name, seconds, peak, result))
        print(f"  {name:<34} {seconds:8.1f} s  {peak:8.0f} MiB  {result}", file=sys.stderr, flush=True)
        return result

    scales = sorted({int(s) for s in args.scales.split(",")})
    top = max(scales)
    scaling = []
    print(f"profile store benchmark: {args.profiles:,} profiles, {args.events:,} events", file=sys.stderr)
    for k in scales:
        p, e = args.profiles * k // top, args.events * k // top
        home, data = str(work / f"home-{k}x"), str(work / f"data-{k}x")
        main_run = k == top
        tag = "" if main_run else f" ({k}x)"
        if main_run:
            record(f"generate{tag}", phase_generate, data, p, e)
            record(f"ingest 3 datasets{tag}", phase_ingest, home, data)
        else:
            in_process(phase_generate, data, p, e)
            in_process(phase_ingest, home, data)
        graph, seconds, peak = in_process(phase_identity, home)
        scaling.append((k, p, e, graph, seconds, peak))
        print(f"  identity graph {k}x: {seconds:.1f} s, {peak:.0f} MiB, {graph}", file=sys.stderr, flush=True)
        if main_run:
            rows.append(("identity graph", seconds, peak, graph))
            record("events keyed to profiles", phase_events, home)
            record("merged profiles (timestampOrdered)", phase_merge, home, False)
            record("merged profiles (dataSetPrecedence)", phase_merge, home, True)
        if not main_run:
            shutil.rmtree(data, ignore_errors=True)

    total = sum(r[1] for r in rows)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n### {dt.date.today()}: {args.profiles:,} profiles / {args.events:,} events\n")
    print(
        f"Command: `.venv/bin/python benchmarks/profile_store.py --profiles {args.profiles} --events {args.events} "
        f"--scales {args.scales}`\n"
    )
    print(
        f"Machine: {os.cpu_count()} cores; load average at the end (1, 5, 15 min): {load}; other sessions shared "
        "the cores during the run, so times include waiting for a CPU.\n"
    )
    print("| phase | time (s) | peak RSS (MiB) | result |")
    print("|---|---:|---:|---|")
    for name, seconds, peak, result in rows:
        short = {k: v for k, v in (result or {}).items() if k not in ("as_of", "files")}
        print(f"| {name} | {seconds:.1f} | {peak:.0f} | {short} |")
    print(f"| **total (ingest + build, with generation)** | {total:.1f} | | |")
    print("\nIdentity stitching as the data grows:\n")
    print(
        "| scale | profiles | events | identities | components | rounds | time (s) | ratio to 1x | peak RSS (MiB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = scaling[0][4]
    for k, p, e, graph, seconds, peak in scaling:
        print(
            f"| {k}x | {p:,} | {e:,} | {graph['identities']:,} | {graph['components']:,} | {graph['rounds']} | "
            f"{seconds:.1f} | {seconds / base:.2f} | {peak:.0f} |"
        )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
