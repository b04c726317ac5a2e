"""Benchmark of the one-pass evaluation engine (issue 5).

    .venv/bin/python benchmarks/evaluation.py [--profiles 1000000] [--events 20000000] [--engines duckdb,polars]
                                              [--baseline-sample 10] [--many 4000] [--record]

Generates (seeded, vectorized) a synthetic profile store in the layout of docs/data-model.md under
``benchmarks/.data/`` (reused when present; events clustered by ``profile_id`` as the profile store writes them), 100 realistic definitions (profile conditions, event windows, counts,
sums, chains, items, inSegment) and measures, each in a fresh subprocess (peak RSS = that process's ru_maxrss):

* ``all``: one job evaluating all 100 definitions;
* ``one``: one job evaluating 1 definition;
* ``each``: the baseline, one job (one query) per definition: measured on ``--baseline-sample`` definitions and
  scaled to 100 (``--baseline-sample 100`` measures them all);
* ``many``: one job evaluating ``--many`` definitions (each engine of ``--engines``);
* ``floor``: what sharing cannot remove from the 100-definition job (read the columns, group, write the pairs;
  no condition evaluated), to put the "100 vs 1" ratio in proportion;
* the membership diff of the 100-definition job's output, as a segment job runs it after the evaluation: a first
  evaluation and the next day's (``--no-diff`` skips it).

``--record`` appends the table to ``benchmarks/results/evaluation.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from results_file import append_result  # benchmarks/ is on sys.path when a benchmark runs

ROOT = Path(__file__).resolve().parent
DATA = ROOT / ".data"
NOW = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)
EVENT_TYPES = [
    "web.webpagedetails.pageViews",
    "commerce.productViews",
    "commerce.productListAdds",
    "commerce.checkouts",
    "commerce.purchases",
    "directMarketing.emailOpened",
    "directMarketing.emailClicked",
]
COUNTRIES = ["US", "CA", "MX", "FR", "DE", "GB", "ES", "IT", "JP", "BR"]
TIERS = ["bronze", "silver", "gold", "platinum"]
SKUS = [f"SKU{i:03d}" for i in range(200)]

PROFILE_SCHEMA = {
    "person.name.firstName": "string",
    "person.name.lastName": "string",
    "person.birthYear": "integer",
    "person.gender": "string",
    "homeAddress.countryCode": "string",
    "homeAddress.city": "string",
    "personalEmail.address": "string",
    "loyalty.tier": "string",
    "loyalty.points": "integer",
}
EVENT_SCHEMA = {
    "timestamp": "date-time",
    "eventType": "string",
    "commerce.order.priceTotal": "number",
    "commerce.order.currencyCode": "string",
    "productListItems[].SKU": "string",
    "productListItems[].quantity": "integer",
    "web.webPageDetails.name": "string",
}


# --- data -------------------------------------------------------------------------------------------------------------
def generate(n_profiles: int, n_events: int, folder: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute  # noqa: F401 - registers pa.compute
    import pyarrow.parquet as pq

    rng = np.random.default_rng(42)
    folder.mkdir(parents=True, exist_ok=True)
    ids = pa.array([f"p{i:08d}" for i in range(n_profiles)])

    def pick(values, n, nulls=0.0):
        arr = pa.array(np.array(values, dtype=object)[rng.integers(0, len(values), n)])
        if nulls:
            mask = pa.array(rng.random(n) < nulls)
            arr = pa.compute.if_else(mask, pa.scalar(None, arr.type), arr)
        return arr

    first = pick(["John", "Jane", "Ana", "Li", "Omar", "Eva", "Paul", "Mia", "Noah", "Zoe"], n_profiles, 0.05)
    last = pick(["Smith", "Doe", "Garcia", "Chen", "Khan", "Rossi"], n_profiles)
    person = pa.StructArray.from_arrays(
        [
            pa.StructArray.from_arrays([first, last], ["firstName", "lastName"]),
            pa.array(rng.integers(1940, 2008, n_profiles)),
            pick(["m", "f", "x"], n_profiles, 0.1),
        ],
        ["name", "birthYear", "gender"],
    )
    home = pa.StructArray.from_arrays(
        [pick(COUNTRIES, n_profiles, 0.02), pick([f"city{i}" for i in range(50)], n_profiles)],
        ["countryCode", "city"],
    )
    domains = ["gmail.com", "yahoo.com", "uni.edu", "corp.com", "mail.fr"]
    email = pa.StructArray.from_arrays(
        [
            pa.compute.binary_join_element_wise(
                pa.array([f"u{i}" for i in range(n_profiles)]), pick(domains, n_profiles), "@"
            )
        ],
        ["address"],
    )
    loyalty = pa.StructArray.from_arrays(
        [pick(TIERS, n_profiles, 0.3), pa.array(rng.integers(0, 10000, n_profiles))], ["tier", "points"]
    )
    pq.write_table(
        pa.table(
            {
                "profile_id": ids,
                "person": person,
                "homeAddress": home,
                "personalEmail": email,
                "loyalty": loyalty,
            }
        ),
        folder / "profiles.parquet",
    )
    add_identity_maps(folder)
    del person, home, email, loyalty

    ev_dir = folder / "arrival"
    ev_dir.mkdir(exist_ok=True)
    chunk = 2_500_000
    now_us = int(NOW.replace(tzinfo=None).timestamp() * 1_000_000)
    span_us = 400 * 86_400 * 1_000_000
    for part, start in enumerate(range(0, n_events, chunk)):
        n = min(chunk, n_events - start)
        # Skewed activity: some profiles have many events.
        pid_idx = np.minimum((rng.pareto(1.2, n) * n_profiles / 8).astype(np.int64), n_profiles - 1)
        pid_idx = (pid_idx + rng.integers(0, n_profiles, n)) % n_profiles
        ts = now_us - (rng.random(n) ** 2 * span_us).astype(np.int64)
        et_idx = rng.choice(len(EVENT_TYPES), n, p=[0.45, 0.2, 0.1, 0.06, 0.04, 0.1, 0.05])
        et = pa.array(np.array(EVENT_TYPES, dtype=object)[et_idx])
        is_order = (et_idx == 4) | (et_idx == 3)
        price = np.where(is_order, np.round(rng.gamma(2.0, 60.0, n), 2), np.nan)
        price_arr = pa.array(price, mask=~is_order)
        cur = pa.array(np.where(rng.random(n) < 0.7, "USD", "EUR").astype(object), mask=~is_order)
        order = pa.StructArray.from_arrays([price_arr, cur], ["priceTotal", "currencyCode"])
        commerce = pa.StructArray.from_arrays([order], ["order"])
        n_items = np.where(et_idx >= 1, rng.integers(0, 4, n), 0)
        offsets = np.concatenate([[0], np.cumsum(n_items)]).astype(np.int32)
        total_items = int(offsets[-1])
        items = pa.StructArray.from_arrays(
            [
                pa.array(np.array(SKUS, dtype=object)[rng.integers(0, len(SKUS), total_items)]),
                pa.array(rng.integers(1, 5, total_items)),
            ],
            ["SKU", "quantity"],
        )
        pli = pa.ListArray.from_arrays(pa.array(offsets), items)
        web = pa.StructArray.from_arrays(
            [
                pa.StructArray.from_arrays(
                    [pick(["home", "search", "product", "cart", "checkout"], n)], ["name"]
                )
            ],
            ["webPageDetails"],
        )
        table = pa.table(
            {
                "profile_id": ids.take(pa.array(pid_idx)),
                "_id": pa.array([f"e{start + i}" for i in range(n)]),
                "timestamp": pa.array(ts, type=pa.timestamp("us")),
                "eventType": et,
                "commerce": commerce,
                "productListItems": pli,
                "web": web,
            }
        )
        pq.write_table(table, ev_dir / f"part-{part:03d}.parquet", row_group_size=500_000)
        print(f"  events part {part}: {n} rows", flush=True)
    cluster_events(folder)


def add_identity_maps(folder: Path) -> None:
    """Give every profile an ``identityMap`` (an ECID and its email, as merged profiles have): the membership
    files carry each member's identities, so the membership diff writes them."""
    import duckdb

    src, tmp = folder / "profiles.parquet", folder / "profiles.tmp.parquet"
    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT *, [{{'key': 'ECID', 'value': [{{'id': 'ecid-' || profile_id, 'primary': true}}]}},
                             {{'key': 'Email', 'value': [{{'id': personalEmail.address, 'primary': false}}]}}]
                            AS identityMap
                  FROM read_parquet('{src}')) TO '{tmp}' (FORMAT parquet)"""
    )
    con.close()
    tmp.replace(src)


def cluster_events(folder: Path) -> None:
    """Write the generated events (``arrival/``, in random profile order) as the profile store publishes them:
    one file sorted by ``profile_id`` (``profiles/store.py: build_events_store``), ZSTD, 122,880-row groups."""
    import duckdb

    src, dst = folder / "arrival", folder / "events"
    dst.mkdir(exist_ok=True)
    (folder / "tmp").mkdir(exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '4GB'; SET temp_directory = '{folder / 'tmp'}'")
    con.execute("SET preserve_insertion_order = false")
    con.execute(
        f"COPY (SELECT * FROM read_parquet('{src}/*.parquet') ORDER BY profile_id) TO '{dst / 'part-0.parquet'}' "
        "(FORMAT PARQUET, COMPRESSION ZSTD, ROW_GROUP_SIZE 122880)"
    )
    con.close()
    for f in src.glob("*.parquet"):
        f.unlink()
    src.rmdir()


# --- definitions ----------------------------------------------------------------------------------------------------
def definitions(n: int, seed: int = 7) -> list[tuple[str, str]]:
    """``n`` realistic definitions (id, PQL), from templates with varied parameters."""
    rnd = random.Random(seed)
    units = [("days", 7), ("days", 30), ("hours", 24), ("weeks", 2), ("months", 3)]

    def et() -> str:
        return rnd.choice(EVENT_TYPES)

    templates = [
        lambda: (
            f'homeAddress.countryCode = "{rnd.choice(COUNTRIES)}" and person.birthYear > {rnd.randint(1950, 2000)}'
        ),
        lambda: (
            f'loyalty.tier in ["{rnd.choice(TIERS)}", "{rnd.choice(TIERS)}"] and loyalty.points >= {rnd.randint(0, 9000)}'
        ),
        lambda: f'personalEmail.address.endsWith("{rnd.choice([".edu", ".com", ".fr"])}", false)',
        lambda: (
            f'person.name.firstName.startsWith("{rnd.choice("JAELOMPNZ")}") and homeAddress.countryCode != "{rnd.choice(COUNTRIES)}"'
        ),
        lambda: (
            lambda u: (
                f'select X from xEvent where X.eventType = "{et()}" and X.timestamp occurs < {rnd.randint(1, u[1])} {u[0]} before now'
            )
        )(rnd.choice(units)),
        lambda: (
            f'xEvent[eventType = "{et()}" and timestamp occurs <= {rnd.randint(1, 60)} days before today].count() >= {rnd.randint(1, 5)}'
        ),
        lambda: (
            f'(sum X.commerce.order.priceTotal over X from xEvent where X.commerce.order.currencyCode = "{rnd.choice(["USD", "EUR"])}") > {rnd.randint(50, 500)}'
        ),
        lambda: (
            f'chain(xEvent, timestamp, [A: WHAT(eventType = "{et()}") WHEN(< {rnd.randint(2, 30)} days before now), B: WHAT(eventType = "commerce.purchases")])'
        ),
        lambda: (
            f'homeAddress.countryCode = "{rnd.choice(COUNTRIES)}" and not(chain(xEvent, timestamp, [A: WHAT(eventType = "{et()}") WHEN(< {rnd.randint(2, 14)} days before now)]))'
        ),
        lambda: f'select X from xEvent where X.productListItems[SKU = "{rnd.choice(SKUS)}"].count() > 0',
        lambda: (
            f'xEvent[eventType = "{et()}"].max(commerce.order.priceTotal) > {rnd.randint(100, 400)} or person.gender = "{rnd.choice("mfx")}"'
        ),
        lambda: f'select X from xEvent where X.timestamp occurs last month and X.eventType = "{et()}"',
    ]
    out = []
    for i in range(n):
        text = templates[i % len(templates)]()
        out.append((f"seg{i:04d}", text))
    # Segment of segments: a few definitions reference earlier ones.
    for _k in range(max(1, n // 50)):
        i = rnd.randrange(len(out) // 2, len(out))
        a, b = rnd.sample(range(0, len(out) // 2), 2)
        out[i] = (out[i][0], f'inSegment("{out[a][0]}") and not(inSegment("{out[b][0]}"))')
    return out


# --- one measurement, in its own process ----------------------------------------------------------------------------
def floor_worker(spec: dict) -> dict:
    """What no sharing removes from the 100-definition job: read every column its definitions read and group the
    events by profile (no condition), join the profiles, and write as many (audience, profile) pairs as the job
    outputs (100 audiences of pseudo-random members), through the engine's Arrow writer. DuckDB."""
    import duckdb

    from segmentation_pipelines.engine.pairs_output import ARROW_BATCH_ROWS, PAIRS_SCHEMA, pairs_writer

    folder = Path(spec["folder"])
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    t0 = time.perf_counter()
    con.execute(
        f"""CREATE TEMP TABLE ev AS SELECT profile_id, max(eventType) AS a, max(timestamp) AS b,
            max(commerce.order.priceTotal) AS c, max(commerce.order.currencyCode) AS d,
            max(len(productListItems)) AS f FROM read_parquet('{folder / "events" / "*.parquet"}')
            GROUP BY profile_id"""
    )
    con.execute(
        f"""CREATE TEMP TABLE wide AS SELECT p.profile_id, hash(p.profile_id) % 100 AS h, ev.*,
            p.person, p.homeAddress, p.personalEmail, p.loyalty
            FROM read_parquet('{folder / "profiles.parquet"}') p LEFT JOIN ev USING (profile_id)"""
    )
    t_scan = time.perf_counter() - t0
    n_profiles = con.execute("SELECT count(*) FROM wide").fetchall()[0][0]
    share = round(
        spec["pairs"] / n_profiles
    )  # members of each of the 100 audiences, in percent of the profiles
    t1 = time.perf_counter()
    writer = pairs_writer(folder / f"floor-{os.getpid()}.parquet")
    for start in range(0, 100, 64):
        sql = " UNION ALL ".join(
            f"SELECT 'seg{i:04d}' AS audience_id, profile_id FROM wide WHERE (h + {i}) % 100 < {share}"
            for i in range(start, min(start + 64, 100))
        )
        for b in con.sql(sql).to_arrow_reader(ARROW_BATCH_ROWS):
            writer.write_batch(b.cast(PAIRS_SCHEMA))
    writer.close()
    (folder / f"floor-{os.getpid()}.parquet").unlink()
    return {
        "seconds": time.perf_counter() - t0,
        "scan_seconds": t_scan,
        "pairs_seconds": time.perf_counter() - t1,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def diff_worker(spec: dict) -> dict:
    """The membership diff of the 100-definition job's output (``spec["qualified"]``, kept by that job and deleted
    here): a first evaluation (everyone realized) and the next day's (everyone existing), each member written with
    its identityMap."""
    import datetime as dt
    import shutil

    from segmentation_pipelines.engine import memberships

    folder = Path(spec["folder"])
    qualified = Path(spec["qualified"])
    audiences = [d[0] for d in spec["defs"]]
    profiles = {a: folder / "profiles.parquet" for a in audiences}
    staging = folder / f"memberships-{os.getpid()}"
    out: dict = {}
    previous: dict = {}
    try:
        for day in (0, 1):
            t = time.perf_counter()
            diff = memberships.diff_memberships(
                qualified_path=qualified,
                audience_ids=audiences,
                previous=previous,
                evaluation_time=NOW + dt.timedelta(days=day),
                profiles_paths=profiles,
                staging_root=staging,
            )
            previous = memberships.publish_files(diff, staging, day)
            out[f"day{day + 1}_seconds"] = time.perf_counter() - t
            out[f"day{day + 1}_members"] = sum(c.members for c in diff.counts.values())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        qualified.unlink(missing_ok=True)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def worker(spec: dict) -> dict:
    if spec.get("floor"):
        return floor_worker(spec)
    if spec.get("diff"):
        return diff_worker(spec)
    from segmentation_pipelines.engine import EngineDefinition, EvaluationRequest, evaluate
    from segmentation_pipelines.pql import parse
    from segmentation_pipelines.pql.schema import Schema

    schema = Schema.from_dicts(profile=PROFILE_SCHEMA, event=EVENT_SCHEMA)
    folder = Path(spec["folder"])
    t0 = time.perf_counter()
    defs = [EngineDefinition(i, parse(t)) for i, t in spec["defs"]]
    groups = [[d] for d in defs] if spec["each"] else [defs]
    counts: dict[str, int] = {}
    timings: dict[str, float] = {}
    for g in groups:
        res = evaluate(
            EvaluationRequest(
                g,
                folder / "profiles.parquet",
                folder / "events",
                NOW,
                folder / f"out-{os.getpid()}.parquet",
                schema,
                engine=spec["engine"],
                memory_limit=spec["memory_limit"],
                temp_dir=folder / "tmp",
            )
        )
        counts.update(res.counts)
        for k, v in res.timings.items():
            timings[k] = timings.get(k, 0.0) + v
    output = folder / f"out-{os.getpid()}.parquet"
    if not spec.get("keep_output"):
        output.unlink(missing_ok=True)
    return {
        "output": str(output),
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "seconds": time.perf_counter() - t0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "members": sum(counts.values()),
    }


def measure(
    engine: str,
    defs: list[tuple[str, str]],
    folder: Path,
    each: bool = False,
    memory_limit: str = "4GB",
    **extra,
) -> dict:
    spec = {"engine": engine, "defs": defs, "folder": str(folder), "each": each, "memory_limit": memory_limit}
    spec.update(extra)
    spec_file = folder / f"spec-{os.getpid()}.json"
    spec_file.write_text(json.dumps(spec))
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", str(spec_file)], capture_output=True, text=True
        )
    finally:
        spec_file.unlink(missing_ok=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare(folder: Path, n_profiles: int, n_events: int) -> None:
    """Generate the data into ``folder``, or bring data generated by an earlier version up to date."""
    import pyarrow.parquet as pq

    if not (folder / "profiles.parquet").exists():
        print(f"generating {n_profiles} profiles / {n_events} events in {folder} ...", flush=True)
        t = time.perf_counter()
        generate(n_profiles, n_events, folder)
        print(f"  generated in {time.perf_counter() - t:.0f} s", flush=True)
    elif not (folder / "events" / "part-0.parquet").exists():  # data generated before events were clustered
        (folder / "events").rename(folder / "arrival")
        cluster_events(folder)
    if "identityMap" not in pq.read_schema(folder / "profiles.parquet").names:  # generated before them
        add_identity_maps(folder)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--engines", default="duckdb,polars")
    ap.add_argument("--baseline-sample", type=int, default=10)
    ap.add_argument("--many", type=int, default=4000)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--only-many", action="store_true", help="measure only the --many definitions job")
    ap.add_argument(
        "--no-diff", action="store_true", help="skip the membership diff of the 100-definition job"
    )
    ap.add_argument("--worker")
    ap.add_argument("--prepare", action="store_true", help="only generate (or upgrade) the data")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return
    if args.prepare:
        prepare(DATA / f"p{args.profiles}-e{args.events}", args.profiles, args.events)
        return
    folder = DATA / f"p{args.profiles}-e{args.events}"
    # In its own process: a worker's peak RSS starts at its parent's RSS when it is spawned (Linux keeps the
    # high-water mark across fork and exec), so data prepared here would inflate every measurement.
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--prepare",
            "--profiles",
            str(args.profiles),
            "--events",
            str(args.events),
        ],
        check=True,
    )
    defs100 = definitions(100)
    rows = []
    for engine in [] if args.only_many else args.engines.split(","):
        # The first engine's output of the 100 definitions is kept for the membership diff below.
        r_all = measure(engine, defs100, folder, keep_output=not (rows or args.no_diff))
        print(engine, "all 100:", r_all, flush=True)
        r_one = measure(engine, defs100[4:5], folder)
        print(engine, "one:", r_one, flush=True)
        sample = [d for d in defs100 if "inSegment" not in d[1]][: args.baseline_sample]
        r_each = measure(engine, sample, folder, each=True)
        print(engine, f"each ({len(sample)}):", r_each, flush=True)
        rows.append((engine, r_all, r_one, r_each, len(sample)))
    floor = None
    if rows and "error" not in rows[0][1]:
        floor = measure("duckdb", [], folder, floor=True, pairs=rows[0][1]["members"])
        print("floor:", floor, flush=True)
    diff = None
    if rows and "output" in rows[0][1] and not args.no_diff:
        diff = measure("duckdb", defs100, folder, diff=True, qualified=rows[0][1]["output"])
        print("membership diff:", diff, flush=True)
    rows_many: list[tuple[str, dict]] = []
    if args.many:
        for engine in args.engines.split(","):
            many = measure(engine, definitions(args.many), folder)
            print(engine, "many:", many, flush=True)
            rows_many.append((engine, many))
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {args.profiles:,} profiles, {args.events:,} events, "
        f"{os.cpu_count()} cores",
        "",
        f"Command: `.venv/bin/python benchmarks/evaluation.py --profiles {args.profiles} --events {args.events} "
        f"--engines {args.engines} --baseline-sample {args.baseline_sample} --many {args.many}"
        f"{' --only-many' if args.only_many else ''}{' --no-diff' if args.no_diff else ''}`",
        "",
        "| engine | 100 defs, one job (s) | peak RSS (MB) | 1 def (s) | one query each, per def (s) | "
        "each x100 (s) | speed-up all vs each | cost 100 vs 1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for engine, a, o, e, n in rows:
        if "error" in a or "error" in o or "error" in e:
            lines.append(f"| {engine} | {a} | | {o} | {e} | | | |")
            continue
        per = e["seconds"] / n
        lines.append(
            f"| {engine} | {a['seconds']:.1f} | {a['peak_rss_mb']:.0f} | {o['seconds']:.1f} | {per:.1f} | "
            f"{per * 100:.0f} | {per * 100 / a['seconds']:.1f}x | {a['seconds'] / o['seconds']:.2f}x |"
        )
    for engine, a, o, _e, _n in rows:
        if "timings" in a:
            lines.append("")
            lines.append(f"{engine}, phases of the 100-definition job (s): {a['timings']}")
            lines.append(f"{engine}, phases of the 1-definition job (s): {o.get('timings')}")
    if floor and "error" not in floor:
        lines.append("")
        lines.append(
            f"Floor (no condition evaluated: read every column the 100 definitions read, group the events by "
            f"profile, join the profiles, write as many pairs): {floor['seconds']:.1f} s (read+group+join "
            f"{floor['scan_seconds']:.1f} s, pairs {floor['pairs_seconds']:.1f} s) = "
            f"{floor['seconds'] / rows[0][2]['seconds']:.2f}x the 1-definition {rows[0][0]} job"
        )
    if diff and "error" not in diff:
        lines.append("")
        lines.append(
            f"Membership diff of the 100-definition job's output (each member written with its identityMap): "
            f"first evaluation {diff['day1_seconds']:.1f} s ({diff['day1_members']:,} members realized), next day "
            f"{diff['day2_seconds']:.1f} s ({diff['day2_members']:,} members existing), peak RSS "
            f"{diff['peak_rss_mb']:.0f} MB"
        )
    elif diff:
        lines.append(f"Membership diff: error {diff['error']}")
    for engine, many in rows_many:
        lines.append("")
        lines.append(
            f"{args.many} definitions, one {engine} job: {many.get('seconds', float('nan')):.1f} s, peak RSS "
            f"{many.get('peak_rss_mb', float('nan')):.0f} MB, {many.get('members', 0):,} pairs"
            + (f" (error: {many['error']})" if "error" in many else "")
        )
    table = "\n".join(lines)
    print(table)
    if args.record:
        append_result("evaluation.md", "Evaluation benchmark (issue 5)", table)


if __name__ == "__main__":
    main()
