"""Benchmark of the profile store: generate, ingest and build (identity graph, keyed events, merged profiles) the
demo data at a given size, and identity stitching time as the data grows (1x, 2x, 4x).

    .venv/bin/python benchmarks/profile_store.py --profiles 1000000 --events 20000000 --scales 1,2,4
    .venv/bin/python benchmarks/profile_store.py --scales 4 --data /tmp/sp-bench-data   # reuse generated data

With the main size, the run then makes a 100k-event batch (events of known identities) and a 10k-profile batch
(updates of existing people, new people, a few links that merge two people) current incrementally, times each
against the full build, and checks that the incremental store equals a full rebuild from the same batches.
``--data`` keeps the generated and ingested main-size data in that folder and reuses it in later runs (the
catalog and batch folders are copied, the batch files hard-linked, into the scratch folder).

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
import subprocess
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
    from segmentation_pipelines.service.context import ServiceContext
    from segmentation_pipelines.service.services import Services
    from segmentation_pipelines.settings import get_settings

    return Services(ServiceContext.create(get_settings(home=home, catalog_url=None)))


def _without_store_refresh() -> None:
    """Ingestion refreshes the store in-process (``DatasetsService._refresh_store``); the benchmark times the store
    builds itself, phase by phase, so its ingestion only lands batches."""
    from segmentation_pipelines.service.datasets import DatasetsService

    DatasetsService._refresh_store = lambda self, reason: {"status": "not refreshed by the benchmark"}


def phase_generate(data_dir: str, profiles: int, events: int) -> dict:
    from segmentation_pipelines.profiles.demo import generate_demo

    files = generate_demo(data_dir, profiles=profiles, events=events, seed=42, as_of=AS_OF)
    return {k: v for k, v in files.as_dict().items() if k != "files"}


def phase_ingest(home: str, data_dir: str) -> dict:
    _without_store_refresh()
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


def _dataset_id(services, name: str) -> str:
    return next(d["id"] for d in services.datasets.list().values() if d["name"] == name)


def _one_file(layout, services, name: str) -> str:
    batch = next(iter(services.datasets.batches(_dataset_id(services, name))))
    return str(layout.batch_files(_dataset_id(services, name), batch)[0])


def phase_make_batches(home: str, out_dir: str, events: int, profiles: int, links: int) -> dict:
    """Write the two benchmark batches (Parquet, in the datasets' own types) from rows already ingested."""
    import duckdb

    services, layout, _ = _batches(home)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ev, crm = _one_file(layout, services, "events"), _one_file(layout, services, "crm")
    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT * REPLACE ('bench-' || _id AS _id, timestamp + INTERVAL 1 DAY AS timestamp)
            FROM read_parquet('{ev}') LIMIT {events}) TO '{out}/events.parquet' (FORMAT PARQUET)"""
    )
    new_people = profiles // 20
    updates = profiles - new_people - links
    con.execute(f"CREATE TABLE crm AS SELECT row_number() OVER () AS n, * FROM read_parquet('{crm}')")
    audit = "{'lastUpdatedDate': TIMESTAMP '2026-11-02 00:00:00'} AS extSourceSystemAudit"
    con.execute(
        f"""COPY (
            SELECT * EXCLUDE (n) REPLACE ('bench-u' || _id AS _id, struct_update(homeAddress, city := 'Benchville')
                   AS homeAddress, {audit}) FROM crm WHERE n <= {updates}
            UNION ALL
            SELECT * EXCLUDE (n) REPLACE ('bench-n' || _id AS _id,
                   [{{'key': 'Email', 'value': [{{'id': 'bench-' || n || '@example.com', 'primary': true}}]}},
                    {{'key': 'CRMID', 'value': [{{'id': 'bench-crm-' || n, 'primary': false}}]}}] AS identityMap, {audit})
            FROM crm WHERE n > 100000 AND n <= 100000 + {new_people}
            UNION ALL
            SELECT a.* EXCLUDE (n) REPLACE ('bench-l' || a._id AS _id,
                   list_concat(list_filter(a.identityMap, lambda x: x.key = 'Email'),
                               list_filter(b.identityMap, lambda x: x.key = 'CRMID')) AS identityMap, {audit})
            FROM crm a JOIN crm b ON b.n = a.n + 1000 WHERE a.n > 200000 AND a.n <= 200000 + {links}
        ) TO '{out}/profiles.parquet' (FORMAT PARQUET)"""
    )
    return {"events": events, "profile_updates": updates, "new_people": new_people, "links": links}


def phase_ingest_one(home: str, dataset: str, path: str) -> dict:
    _without_store_refresh()
    services = _services(home)
    batch = services.datasets.ingest(_dataset_id(services, dataset), [path])
    return {"rows": batch["rowCount"], "rejected": batch.get("rejectedRowCount")}


def phase_refresh(home: str) -> dict:
    """Make every part current (the same three builds as the full build; they choose their mode)."""
    from segmentation_pipelines.profiles.store import (
        build_events_store,
        build_identity_graph_store,
        build_merged_profiles,
    )

    services, layout, b = _batches(home)
    out = {}
    for name, fn in (
        ("identity graph", lambda: build_identity_graph_store(layout, b["profile"], b["experienceevent"])),
        ("events", lambda: build_events_store(layout, b["experienceevent"])),
        (
            "merged",
            lambda: build_merged_profiles(layout, b["profile"], services.merge_policies.ensure_default()),
        ),
    ):
        started = time.perf_counter()
        r = fn()
        out[name] = {"mode": r["mode"], "seconds": round(time.perf_counter() - started, 2)}
    return out


def phase_equality(home: str) -> dict:
    """Build a fresh store in full from the same batches and compare it with the incremental one."""
    import duckdb

    from segmentation_pipelines.profiles.layout import StoreLayout
    from segmentation_pipelines.profiles.store import (
        build_events_store,
        build_identity_graph_store,
        build_merged_profiles,
    )

    services, layout, b = _batches(home)
    policy = services.merge_policies.ensure_default()
    fresh = StoreLayout(Path(home) / "full-rebuild")
    shutil.rmtree(fresh.sandbox_root, ignore_errors=True)
    fresh.sandbox_root.mkdir(parents=True)
    (fresh.sandbox_root / "datasets").symlink_to(layout.sandbox_root / "datasets")
    build_identity_graph_store(fresh, b["profile"], b["experienceevent"])
    build_events_store(fresh, b["experienceevent"])
    build_merged_profiles(fresh, b["profile"], policy)
    con = duckdb.connect()
    con.execute(f"SET temp_directory='{layout.tmp_dir()}'")
    # EXCEPT ALL over 20M nested rows: spill under a limit rather than take the machine's memory.
    con.execute("SET memory_limit='4GB'")
    out = {}
    for name, a, c in (
        ("identities", f"'{layout.identities_path()}'", f"'{fresh.identities_path()}'"),
        (
            "events",
            f"'{layout.events_path()}', union_by_name=true",
            f"'{fresh.events_path()}', union_by_name=true",
        ),
        ("merged", f"'{layout.profiles_path(policy['id'])}'", f"'{fresh.profiles_path(policy['id'])}'"),
    ):
        rows = con.execute(f"SELECT count(*) FROM read_parquet({a})").fetchone()[0]
        diff = con.execute(
            f"""SELECT (SELECT count(*) FROM (SELECT * FROM read_parquet({a}) EXCEPT ALL SELECT * FROM read_parquet({c})))
                     + (SELECT count(*) FROM (SELECT * FROM read_parquet({c}) EXCEPT ALL SELECT * FROM read_parquet({a})))"""
        ).fetchone()[0]
        out[name] = {"rows": int(rows), "differing_rows": int(diff)}
    shutil.rmtree(fresh.sandbox_root, ignore_errors=True)
    out["equal"] = all(v["differing_rows"] == 0 for v in out.values() if isinstance(v, dict))
    return out


def _prepare_data(work: Path, data_root: Path, profiles: int, events: int, record) -> tuple[str, str]:
    """With ``--data``: generate and ingest into ``data_root`` once, then work on a copy (hard-linked files)."""
    home, data = data_root / "home", data_root / "data"
    if not (home / "catalog.db").exists():
        shutil.rmtree(data_root, ignore_errors=True)
        data_root.mkdir(parents=True)
        record("generate", phase_generate, str(data), profiles, events)
        record("ingest 3 datasets", phase_ingest, str(home), str(data))
    copy = work / "home"
    subprocess.run(["cp", "-al", str(home), str(copy)], check=True)
    for f in copy.rglob("catalog.db*"):  # the catalog is written to: a real copy, not a link
        shutil.copyfile(home / f.relative_to(copy), f.with_suffix(f.suffix + ".tmp"))
        os.replace(f.with_suffix(f.suffix + ".tmp"), f)
    for store in copy.glob("data/*/*/store"):
        shutil.rmtree(store)
    return str(copy), str(data)


# ------------------------------------------------------------------ driver


def _incremental_runs(args, work: Path, home: str, rows: list, record) -> dict:
    """The two batches made current incrementally, against the full build of this run; then the equality check."""
    # Build seconds as the build functions report them (the process times above add interpreter start-up).
    full = {n: r["seconds"] for n, _, _, r in rows if isinstance(r, dict) and "seconds" in r}
    full_build = (
        full["identity graph"] + full["events keyed to profiles"] + full["merged profiles (timestampOrdered)"]
    )
    record(
        "make the benchmark batches",
        phase_make_batches,
        home,
        str(work / "batches"),
        args.batch_events,
        args.batch_profiles,
        args.batch_links,
    )
    out = {"full_build": full_build, "batches": []}
    for label, dataset, path in (
        (f"{args.batch_events:,}-event batch", "events", work / "batches" / "events.parquet"),
        (f"{args.batch_profiles:,}-profile batch", "crm", work / "batches" / "profiles.parquet"),
    ):
        record(f"ingest the {label}", phase_ingest_one, home, dataset, str(path))
        result, seconds, peak = in_process(phase_refresh, home)
        rows.append((f"refresh after the {label}", seconds, peak, result))
        print(f"  refresh after the {label}: {seconds:.1f} s {result}", file=sys.stderr, flush=True)
        assert all(r["mode"] == "incremental" for r in result.values()), result
        build = sum(r["seconds"] for r in result.values())
        out["batches"].append((label, build, seconds, result))
    if args.quick:
        return {**out, "equality": {"equal": "not checked (--quick)"}}
    eq = record("equality check (full rebuild, compare)", phase_equality, home)
    print(f"  incremental store equals a full rebuild: {eq['equal']} {eq}", file=sys.stderr, flush=True)
    assert eq["equal"], eq
    out["equality"] = eq
    return out


def _print_incremental(inc: dict | None) -> None:
    if not inc:
        return
    print(
        f"\nIncremental refresh (identity graph + events + merged profiles of the default policy) against the full "
        f"build of the same three parts in this run ({inc['full_build']:.1f} s):\n"
    )
    print(
        "| batch | identity graph (s) | events (s) | merged (s) | build total (s) | ratio to full | process (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, build, seconds, r in inc["batches"]:
        print(
            f"| {label} | {r['identity graph']['seconds']:.2f} | {r['events']['seconds']:.2f} | "
            f"{r['merged']['seconds']:.2f} | {build:.2f} | {build / inc['full_build']:.3f} | {seconds:.1f} |"
        )
    eq = inc["equality"]
    if isinstance(eq["equal"], str):
        print(f"\nEquality with a full rebuild: {eq['equal']}.")
        return
    print(
        "\nEquality with a full rebuild from the same batches (rows differing either way, `EXCEPT ALL`): "
        + ", ".join(
            f"{k} {v['rows']:,} rows, {v['differing_rows']} differing" for k, v in eq.items() if k != "equal"
        )
        + f" -> **{'equal' if eq['equal'] else 'NOT equal'}**."
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument(
        "--scales", default="1,2,4", help="identity-scaling points, as multiples of the size / max"
    )
    ap.add_argument("--work", default="/tmp/sp-bench-profile-store", help="scratch folder (deleted first)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument(
        "--data", help="keep the main-size generated + ingested data here and reuse it in later runs"
    )
    ap.add_argument("--batch-events", type=int, default=100_000)
    ap.add_argument("--batch-profiles", type=int, default=10_000)
    ap.add_argument("--batch-links", type=int, default=20, help="profiles of the batch that merge two people")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="while iterating: skip the second merge policy and the equality check (never for recorded figures)",
    )
    args = ap.parse_args(argv)

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = []
    incremental = None

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
        if main_run and args.data:
            home, data = _prepare_data(work, Path(args.data), p, e, record)
        elif main_run:
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
            if not args.quick:
                record("merged profiles (dataSetPrecedence)", phase_merge, home, True)
            incremental = _incremental_runs(args, work, home, rows, record)
        if not main_run:
            shutil.rmtree(data, ignore_errors=True)

    total = sum(r[1] for r in rows if not r[0].startswith(("refresh", "equality", "make ", "ingest the")))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n### {dt.date.today()}: {args.profiles:,} profiles / {args.events:,} events\n")
    print(
        f"Command: `.venv/bin/python benchmarks/profile_store.py --profiles {args.profiles} --events {args.events} "
        f"--scales {args.scales}{' --data ' + args.data if args.data else ''}`\n"
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
    _print_incremental(incremental)
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
