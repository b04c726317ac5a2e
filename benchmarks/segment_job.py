"""Benchmark of the whole segment job against hand-written DuckDB SQL (issue 18, target 1).

    flock /tmp/sp-bench.lock .venv/bin/python benchmarks/segment_job.py [--profiles 1000000] [--events 20000000]
                                                                        [--rounds 2] [--definitions 100] [--floor]
                                                                        [--engine duckdb|polars] [--work DIR] [--record]

Data: the seeded synthetic data of ``benchmarks/evaluation.py`` (``benchmarks/.data/``, read only), ingested once
through the in-process client into a home under ``--work`` (``preview.py``'s ``ingested_home``: profiles and events
uploaded as Parquet, the profile store built by the service). Both sides then read that home's profile store (the
merged profiles and the keyed events the job reads), so they see the same profile ids.

100 definitions, 20 of each of five kinds (the templates of ``benchmarks/evaluation.py``): profile conditions
(country and birth year), loyalty (tier and points), event windows (an event type within N units before now), a
purchase sum (per currency, over a threshold) and counted page views (at least K within N days before today).

Per round (round 1 at the data's ``NOW``: a first evaluation, everyone ``realized``; round 2 the next day: the diff
has ``existing`` and ``exited`` members), in this order:

* **hand-written**: what an expert would write instead, one DuckDB query per kind of workload (each kind's
  parameters in a small table joined once, events read once per kind), writing the ``(audience_id, profile_id)``
  pairs to Parquet;
* **the job**: ``client.segment_jobs.create(100 definitions, evaluation_time=..., wait=True)``, everything a user
  waits for (store check, Dagster run, evaluation, membership diff, identities, publication, metrics), with its
  ``metrics.phasesInMs``;
* **the check**: the job's current members (the published membership files, ``realized``/``existing``) and the
  hand-written pairs are the same set (both differences empty), else the benchmark fails.

Reports job / hand-written per round, with the load average (``uptime``) before and after. ``--definitions N``
(a multiple of 5) evaluates N definitions instead of 100; ``--floor`` also measures, on the last round's pairs,
the physical floor (read and group) and what writing the memberships costs in today's format and as sorted integer
pairs over a profile index (``floor``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from dateutil.relativedelta import relativedelta
from evaluation import COUNTRIES, DATA, EVENT_TYPES, NOW, TIERS, prepare
from preview import ingested_home, load
from results_file import append_result

PAGE_VIEWS = "web.webpagedetails.pageViews"
UNITS = [("days", 7), ("days", 30), ("hours", 24), ("weeks", 2), ("months", 3)]
KINDS = ("profile", "loyalty", "window", "sum", "count")
NAME_PREFIX = "bench18-"


def definitions(n: int = 100, seed: int = 18) -> list[dict]:
    """``n`` definitions, the five kinds in turn; each with its PQL and the parameters the hand-written SQL uses."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        if kind == "profile":
            p = {"country": rnd.choice(COUNTRIES), "year": rnd.randint(1950, 2000)}
            pql = f'homeAddress.countryCode = "{p["country"]}" and person.birthYear > {p["year"]}'
        elif kind == "loyalty":
            p = {"t1": rnd.choice(TIERS), "t2": rnd.choice(TIERS), "points": rnd.randint(0, 9000)}
            pql = f'loyalty.tier in ["{p["t1"]}", "{p["t2"]}"] and loyalty.points >= {p["points"]}'
        elif kind == "window":
            unit, most = rnd.choice(UNITS)
            p = {"event": rnd.choice(EVENT_TYPES), "n": rnd.randint(1, most), "unit": unit}
            pql = (
                f'select X from xEvent where X.eventType = "{p["event"]}" and X.timestamp occurs < {p["n"]} '
                f"{unit} before now"
            )
        elif kind == "sum":
            p = {"currency": rnd.choice(["USD", "EUR"]), "above": rnd.randint(50, 500)}
            pql = (
                f"(sum X.commerce.order.priceTotal over X from xEvent where X.commerce.order.currencyCode = "
                f'"{p["currency"]}") > {p["above"]}'
            )
        else:
            p = {"days": rnd.randint(1, 60), "at_least": rnd.randint(1, 5)}
            pql = (
                f'xEvent[eventType = "{PAGE_VIEWS}" and timestamp occurs <= {p["days"]} days before today]'
                f".count() >= {p['at_least']}"
            )
        out.append({"name": f"{NAME_PREFIX}{i:03d}-{kind}", "kind": kind, "pql": pql, "params": p})
    return out


# --- the hand-written side ------------------------------------------------------------------------------------------
def _values(rows: list[tuple], columns: str) -> str:
    def lit(v):
        if isinstance(v, str):
            return "'" + v.replace("'", "''") + "'"
        if isinstance(v, datetime):
            return f"TIMESTAMP '{v.isoformat(sep=' ')}'"
        return str(v)

    body = ", ".join("(" + ", ".join(lit(v) for v in r) + ")" for r in rows)
    return f"(VALUES {body}) AS d({columns})"


def hand_written_queries(defs: list[dict], ids: dict[str, str], when: datetime, profiles: str, events: str):
    """One query per kind: ``(kind, SELECT audience_id, profile_id ...)``. ``when``: naive UTC evaluation time."""
    today = when.replace(hour=0, minute=0, second=0, microsecond=0)
    of = {k: [d for d in defs if d["kind"] == k] for k in KINDS}
    P = f"read_parquet('{profiles}')"
    E = f"read_parquet('{events}')"
    out = []
    rows = [(ids[d["name"]], d["params"]["country"], d["params"]["year"]) for d in of["profile"]]
    out.append(
        (
            "profile",
            f"""SELECT d.aid AS audience_id, p.profile_id FROM {P} p
                JOIN {_values(rows, "aid, country, year")}
                  ON p.homeAddress.countryCode = d.country AND p.person.birthYear > d.year""",
        )
    )
    rows = [
        (ids[d["name"]], d["params"]["t1"], d["params"]["t2"], d["params"]["points"]) for d in of["loyalty"]
    ]
    out.append(
        (
            "loyalty",
            f"""SELECT d.aid AS audience_id, p.profile_id FROM {P} p
                JOIN {_values(rows, "aid, t1, t2, points")}
                  ON p.loyalty.tier IN (d.t1, d.t2) AND p.loyalty.points >= d.points""",
        )
    )
    # An event of the type in (now - N units, now): the latest such event before now, per profile and type.
    rows = []
    for d in of["window"]:
        p = d["params"]
        start = when - relativedelta(**{p["unit"]: p["n"]})
        rows.append((ids[d["name"]], p["event"], start))
    out.append(
        (
            "window",
            f"""WITH last AS (SELECT profile_id, eventType, max(timestamp) AS ts FROM {E}
                              WHERE timestamp < TIMESTAMP '{when.isoformat(sep=" ")}' GROUP BY ALL)
                SELECT d.aid AS audience_id, l.profile_id FROM last l
                JOIN {_values(rows, "aid, event, start")} ON l.eventType = d.event AND l.ts > d.start""",
        )
    )
    rows = [(ids[d["name"]], d["params"]["currency"], d["params"]["above"]) for d in of["sum"]]
    out.append(
        (
            "sum",
            f"""WITH s AS (SELECT profile_id, commerce.order.currencyCode AS currency,
                                  sum(commerce.order.priceTotal) AS total FROM {E}
                           WHERE commerce.order.currencyCode IN ('USD', 'EUR') GROUP BY ALL)
                SELECT d.aid AS audience_id, s.profile_id FROM s
                JOIN {_values(rows, "aid, currency, above")} ON s.currency = d.currency AND s.total > d.above""",
        )
    )
    # Page views in [today - N days, today): one pass over the widest window, one conditional count per definition.
    rows = [
        (ids[d["name"]], today - dt.timedelta(days=d["params"]["days"]), d["params"]["at_least"])
        for d in of["count"]
    ]
    widest = min(r[1] for r in rows)
    checks = ", ".join(
        f"CASE WHEN count(*) FILTER (WHERE timestamp >= TIMESTAMP '{start.isoformat(sep=' ')}') >= {k} "
        f"THEN '{aid}' END"
        for aid, start, k in rows
    )
    out.append(
        (
            "count",
            f"""SELECT unnest(list_filter([{checks}], lambda x: x IS NOT NULL)) AS audience_id, profile_id FROM {E}
                WHERE eventType = '{PAGE_VIEWS}' AND timestamp >= TIMESTAMP '{widest.isoformat(sep=" ")}'
                  AND timestamp < TIMESTAMP '{today.isoformat(sep=" ")}' GROUP BY profile_id""",
        )
    )
    return out


def run_hand_written(queries, out_dir: Path) -> dict:
    """Each kind's query writes its pairs to ``out_dir/<kind>.parquet``; seconds per kind and in all."""
    from segmentation_pipelines import duck

    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    con = duck.connect(out_dir / "spill", "4GB")
    times = {}
    started = time.perf_counter()
    try:
        for kind, sql in queries:
            t = time.perf_counter()
            con.execute(f"COPY ({sql}) TO '{out_dir / f'{kind}.parquet'}' (FORMAT parquet)")
            times[kind] = time.perf_counter() - t
    finally:
        con.close()
    return {"seconds": time.perf_counter() - started, "by_kind": times}


# --- the job side ---------------------------------------------------------------------------------------------------
def ensure_definitions(client, defs: list[dict]) -> dict[str, str]:
    """name -> id of the benchmark's definitions in the home (created once)."""
    existing: dict[str, str] = {}
    start = 0
    while True:  # pages of 1,000 (the list's maximum): 4,000 definitions span four
        page = client.segment_definitions.list(limit=1000, start=start)["segments"]
        existing.update({d["name"]: d["id"] for d in page})
        if len(page) < 1000:
            break
        start += len(page)
    for d in defs:
        if d["name"] not in existing:
            created = client.segment_definitions.create(
                {"name": d["name"], "expression": {"type": "PQL", "format": "pql/text", "value": d["pql"]}}
            )
            existing[d["name"]] = created["id"]
    return {d["name"]: existing[d["name"]] for d in defs}


class PeakRss:
    """Peak resident memory of this process and all its descendants (summed, sampled every 50 ms from /proc) while
    the ``with`` block runs: the job runs in-process (``execute_in_process``), but a sum over the tree also counts
    any worker a step would start."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    @staticmethod
    def _tree(pid: int) -> list[int]:
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            out.append(p)
            for task in Path(f"/proc/{p}/task").glob("*/children"):
                try:
                    todo += [int(c) for c in task.read_text().split()]
                except OSError:
                    pass
        return out

    @classmethod
    def now(cls) -> int:
        total = 0
        for p in cls._tree(os.getpid()):
            try:
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self.peak = self.now()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def compare_hashed(client, ids: list[str], evaluation_ms: int, hand_dir: Path) -> tuple[int, int, int]:
    """As :func:`compare`, streaming: per audience, the count and a sum of 64-bit hashes of the profile ids on
    each side (set differences over ~10^9 pairs would not fit). Returns (pairs, audiences whose count or hash
    differs as seen from the job, and as seen from the hand-written side) - 0/0 when the sets agree."""
    from segmentation_pipelines import duck
    from segmentation_pipelines.engine import memberships
    from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations

    found = AudienceEvaluations(client.ctx).latest_for(ids, before_ms=evaluation_ms + 1)
    assert set(found) == set(ids) and all(e.evaluation_ms == evaluation_ms for e in found.values())
    con = duck.connect(hand_dir / "spill-check", "4GB")
    try:
        agg = "count(*) AS n, sum(hash(profile_id)::HUGEINT) AS h"
        hand = {
            a: (n, h)
            for a, n, h in con.execute(
                f"SELECT audience_id, {agg} FROM read_parquet('{hand_dir / '*.parquet'}', union_by_name = true) "
                "GROUP BY audience_id"
            ).fetchall()
        }
        job = {}
        files = {a: memberships.inspect_file(con, e.path) for a, e in found.items()}
        shared = {f.identities for f in files.values()}
        if len(shared) == 1 and None not in shared:  # pidx format, one identities file: all files in one pass
            (identities,) = shared
            con.execute("CREATE TEMP TABLE files (path VARCHAR, audience_id VARCHAR)")
            con.executemany("INSERT INTO files VALUES (?, ?)", [(str(f.path), a) for a, f in files.items()])
            job = {
                a: (n, h)
                for a, n, h in con.execute(
                    f"SELECT f.audience_id, count(*) AS n, sum(hash(i.profile_id)::HUGEINT) AS h "
                    f"FROM read_parquet([{', '.join(repr(str(f.path)) for f in files.values())}], filename = true) m "
                    "JOIN files f ON f.path = m.filename "
                    f"JOIN read_parquet('{identities}') i ON i.src = m.src AND i.pidx = m.pidx "
                    "WHERE m.status <= 1 GROUP BY f.audience_id"
                ).fetchall()
            }
            found = {}
        for a, e in found.items():
            job[a] = con.execute(
                f"SELECT {agg} FROM ({memberships.members_sql(con, e.path)}) WHERE status IN ('realized', 'existing')"
            ).fetchone()
            job[a] = (job[a][0], job[a][1] if job[a][0] else None)
    finally:
        con.close()
    pairs = sum(n for n, _ in job.values())
    only_job = sum(1 for a, v in job.items() if v[0] and hand.get(a) != v)
    only_hand = sum(1 for a, v in hand.items() if job.get(a) != v)
    return pairs, only_job, only_hand


def member_reads(client, ids: list[str], when: datetime, n: int = 20, seed: int = 18) -> dict:
    """Seconds of member reads through the client on ``n`` audiences drawn at random: the first page (100) of the
    evaluation in effect at ``when``, and the same as of ``when`` (``evaluationTime``) once a later one exists."""
    rnd = random.Random(seed)
    sample = rnd.sample(ids, min(n, len(ids)))
    out = {}
    for name, kw in (("latest", {}), ("as_of", {"evaluationTime": when.isoformat()})):
        times = []
        for a in sample:
            t = time.perf_counter()
            page = client.audiences.members(a, limit=100, **kw)
            times.append(time.perf_counter() - t)
            assert page["_page"]["totalCount"] >= len(page["children"])
        times.sort()
        out[name] = {"median": times[len(times) // 2], "max": times[-1]}
    return out


def compare(client, ids: list[str], evaluation_ms: int, hand_dir: Path) -> tuple[int, int, int]:
    """(pairs, only in the job, only hand-written): the job's current members against the hand-written pairs."""
    from segmentation_pipelines import duck
    from segmentation_pipelines.engine import memberships
    from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations

    found = AudienceEvaluations(client.ctx).latest_for(ids, before_ms=evaluation_ms + 1)
    assert set(found) == set(ids) and all(e.evaluation_ms == evaluation_ms for e in found.values())
    con = duck.connect()
    try:
        selects = " UNION ALL ".join(  # either membership format (engine/memberships.py)
            f"SELECT '{a}' AS audience_id, profile_id FROM ({memberships.members_sql(con, e.path)}) "
            "WHERE status IN ('realized', 'existing')"
            for a, e in found.items()
        )
        con.execute(f"CREATE TEMP TABLE job AS {selects}")
        con.execute(
            f"CREATE TEMP TABLE hand AS SELECT * FROM read_parquet('{hand_dir / '*.parquet'}', union_by_name = true)"
        )
        pairs = con.execute("SELECT count(*) FROM job").fetchone()[0]
        only_job = con.execute(
            "SELECT count(*) FROM (SELECT audience_id, profile_id FROM job EXCEPT ALL "
            "SELECT audience_id, profile_id FROM hand)"
        ).fetchone()[0]
        only_hand = con.execute(
            "SELECT count(*) FROM (SELECT audience_id, profile_id FROM hand EXCEPT ALL "
            "SELECT audience_id, profile_id FROM job)"
        ).fetchone()[0]
    finally:
        con.close()
    return pairs, only_job, only_hand


def disk(client, ids: list[str], evaluation_ms: int) -> dict:
    """Bytes on disk of one evaluation: its membership files (per row: member or retained exit) and, in the
    format of issue 18, its identities file (once per evaluation)."""
    from segmentation_pipelines import duck
    from segmentation_pipelines.engine import memberships
    from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations

    found = AudienceEvaluations(client.ctx).latest_for(ids, before_ms=evaluation_ms + 1)
    con = duck.connect()
    try:
        files = [e.path for e in found.values()]
        rows = con.execute(
            "SELECT count(*) FROM read_parquet(["
            + ", ".join(f"'{p}'" for p in files)
            + "], union_by_name = true)"
        ).fetchone()[0]
        identities = {memberships.inspect_file(con, p).identities for p in files} - {None}
    finally:
        con.close()
    size = sum(p.stat().st_size for p in files)
    id_size = sum(p.stat().st_size for p in identities)
    return {"rows": rows, "files_bytes": size, "identities_bytes": id_size, "b_per_row": size / max(rows, 1)}


def floor(profiles: str, events: str, hand_dir: Path, out_dir: Path) -> dict:
    """The physical floor on this machine and what the membership format costs, on the hand-written pairs:

    * ``read_group``: read every column the definitions read and group the events by profile (no condition);
    * ``pairs``: write the pairs as ``(audience_id, profile_id)`` strings (the engine's output);
    * ``pairs_identities``: write them as the membership files hold them today (one file per audience, every row
      with its member's ``identityMap``, joined from the merged profiles);
    * ``int_pairs``: write them as ``(audience number, profile number)`` integers sorted by audience and profile
      over a profile index (``row_number`` of the merged profiles), the identities once per profile beside them.
    Seconds and bytes on disk of each."""
    from segmentation_pipelines import duck

    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    con = duck.connect(out_dir / "spill", "4GB")
    P, E = f"read_parquet('{profiles}')", f"read_parquet('{events}')"
    H = f"read_parquet('{hand_dir / '*.parquet'}')"
    out: dict = {}

    def timed(name: str, sql: str, target: Path | None = None) -> None:
        t = time.perf_counter()
        con.execute(sql)
        out[name] = time.perf_counter() - t
        if target is not None:
            files = [target] if target.is_file() else list(target.rglob("*.parquet"))
            out[name + "_bytes"] = sum(f.stat().st_size for f in files)

    try:
        timed(
            "read_group",
            f"""CREATE TEMP TABLE g AS SELECT p.profile_id, p.homeAddress, p.person, p.loyalty, e.* EXCLUDE (profile_id)
                FROM {P} p LEFT JOIN (SELECT profile_id, max(eventType) a, max(timestamp) b,
                                             sum(commerce.order.priceTotal) c, max(commerce.order.currencyCode) d
                                      FROM {E} GROUP BY profile_id) e USING (profile_id)""",
        )
        con.execute("DROP TABLE g")
        out["pairs_n"] = con.execute(f"SELECT count(*) FROM {H}").fetchone()[0]
        timed(
            "pairs",
            f"COPY (SELECT * FROM {H}) TO '{out_dir / 'pairs.parquet'}' (FORMAT parquet)",
            out_dir / "pairs.parquet",
        )
        timed(
            "pairs_identities",
            f"""COPY (SELECT h.audience_id, h.profile_id, 'realized' AS status,
                             TIMESTAMP '2026-11-29 15:00:00' AS lastQualificationTime, p.identityMap
                      FROM {H} h JOIN (SELECT profile_id, identityMap FROM {P}) p USING (profile_id))
                TO '{out_dir / "memberships"}' (FORMAT parquet, PARTITION_BY (audience_id))""",
            out_dir / "memberships",
        )
        timed(
            "int_pairs",
            f"""CREATE TEMP TABLE idx AS SELECT profile_id, (row_number() OVER () - 1)::UINTEGER AS pidx FROM {P};
                CREATE TEMP TABLE aud AS SELECT audience_id, (row_number() OVER (ORDER BY audience_id) - 1)::USMALLINT
                                         AS aidx FROM (SELECT DISTINCT audience_id FROM {H});
                COPY (SELECT a.aidx, i.pidx FROM {H} h JOIN aud a USING (audience_id) JOIN idx i USING (profile_id)
                      ORDER BY a.aidx, i.pidx) TO '{out_dir / "int_pairs.parquet"}' (FORMAT parquet, COMPRESSION zstd)""",
            out_dir / "int_pairs.parquet",
        )
        timed(
            "identities_once",
            f"""COPY (SELECT i.pidx, p.profile_id, p.identityMap FROM {P} p JOIN idx i USING (profile_id))
                TO '{out_dir / "identities.parquet"}' (FORMAT parquet, COMPRESSION zstd)""",
            out_dir / "identities.parquet",
        )
    finally:
        con.close()
        shutil.rmtree(out_dir, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / ".work")
    ap.add_argument("--definitions", type=int, default=100, help="a multiple of 5 (20 of each kind per 100)")
    ap.add_argument("--floor", action="store_true", help="also the floor and the membership formats' costs")
    ap.add_argument(
        "--engine", choices=("duckdb", "polars"), default="duckdb", help="the job's evaluation engine"
    )
    ap.add_argument(
        "--check",
        choices=("exact", "hashed", "none"),
        help="how the job's members are checked against the hand-written pairs: exact set differences (default up "
        "to 100 definitions), per-audience counts and hash sums (streaming; default above), or not at all",
    )
    ap.add_argument("--no-hand", action="store_true", help="skip the hand-written SQL (and so the check)")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    check = args.check or ("exact" if args.definitions <= 100 else "hashed")
    if args.no_hand:
        check = "none"
    os.environ["SEGMENTATION_ENGINE"] = args.engine  # the settings the in-process client (and its runs) read

    from segmentation_pipelines import SegmentationClient
    from segmentation_pipelines.profiles.layout import StoreLayout, pinned
    from segmentation_pipelines.timeutil import to_ms

    folder = DATA / f"p{args.profiles}-e{args.events}"
    prepare(folder, args.profiles, args.events)
    work = args.work / folder.name / "segment-job"
    home = ingested_home(folder, work)
    defs = definitions(args.definitions)
    rows = []
    with SegmentationClient(home=home) as client:
        ids = ensure_definitions(client, defs)
        policy = client.segment_definitions.get(next(iter(ids.values())))["mergePolicyId"]
        layout = StoreLayout(client.ctx.sandbox_root)
        profiles = pinned(layout.profiles_path(policy))
        events = str(Path(layout.events_path()).parent.resolve() / "*.parquet")
        body = [{"segmentId": i} for i in ids.values()]
        for r in range(args.rounds):
            when = NOW + dt.timedelta(days=r)
            naive = when.astimezone(UTC).replace(tzinfo=None)
            before = load()
            hand, hand_rss = {"seconds": float("nan"), "by_kind": {}}, 0
            if not args.no_hand:
                with PeakRss() as rss:
                    hand = run_hand_written(
                        hand_written_queries(defs, ids, naive, profiles, events), work / "hand-written"
                    )
                hand_rss = rss.peak
                print(
                    f"round {r + 1}: hand-written {hand['seconds']:.1f} s {hand['by_kind']}, "
                    f"peak RSS {hand_rss / 2**30:.2f} GiB",
                    flush=True,
                )
            started = time.perf_counter()
            with PeakRss() as rss:
                job = client.segment_jobs.create(body, evaluation_time=when, wait=True)
            job_s = time.perf_counter() - started
            assert job["status"] == "SUCCEEDED", job.get("errors")
            metrics = client.segment_jobs.get(job["id"])["metrics"]
            print(
                f"round {r + 1}: job {job_s:.1f} s, peak RSS {rss.peak / 2**30:.2f} GiB, "
                f"phases {metrics.get('phasesInMs')}",
                flush=True,
            )
            after_job = load()
            pairs, only_job, only_hand = {"exact": compare, "hashed": compare_hashed}.get(
                check, lambda *a: (None, 0, 0)
            )(client, list(ids.values()), to_ms(when), work / "hand-written")
            on_disk = disk(client, list(ids.values()), to_ms(when))
            reads = member_reads(client, list(ids.values()), rows[0]["when"] if rows else when)
            by_status = metrics["segmentedProfileByStatusCounter"].values()
            statuses = {s: sum(c[s] for c in by_status) for s in ("realized", "existing", "exited")}
            rows.append(
                {
                    "round": r + 1,
                    "when": when,
                    "job_s": job_s,
                    "hand": hand,
                    "phases": metrics.get("phasesInMs") or {},
                    "pairs": pairs,
                    "only_job": only_job,
                    "only_hand": only_hand,
                    "statuses": statuses,
                    "load": (before, after_job),
                    "disk": on_disk,
                    "job_rss": rss.peak,
                    "hand_rss": hand_rss,
                    "reads": reads,
                }
            )
            print(rows[-1], flush=True)
            assert only_job == 0 and only_hand == 0, f"the job and the hand-written SQL differ: {rows[-1]}"
        floor_figures = None
        if args.floor:
            before = load()
            floor_figures = floor(profiles, events, work / "hand-written", work / "floor")
            floor_figures["load"] = (before, load())
            print("floor:", floor_figures, flush=True)
    shutil.rmtree(work / "hand-written", ignore_errors=True)

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    checked = {"exact": "identical", "hashed": "same counts and hashes per audience", "none": "not checked"}[
        check
    ]
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"### {stamp} — {args.profiles:,} profiles, {args.events:,} events, {args.definitions} definitions, "
        f"{cores} cores",
        "",
        f"Command: `flock /tmp/sp-bench.lock .venv/bin/python benchmarks/segment_job.py --profiles {args.profiles} "
        f"--events {args.events} --rounds {args.rounds} --definitions {args.definitions}"
        f"{' --floor' if args.floor else ''}{' --engine ' + args.engine if args.engine != 'duckdb' else ''}"
        f"{' --check ' + args.check if args.check else ''}{' --no-hand' if args.no_hand else ''}"
        f"{' --work ' + str(args.work) if args.work != ap.get_default('work') else ''}`",
        "",
        f"| round | evaluation | job, through the client (s) | job peak RSS (GiB) | hand-written SQL (s) | "
        f"hand-written peak RSS (GiB) | job / hand-written | pairs ({checked}) | realized / existing / exited | "
        "load before → after the job |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["statuses"]
        pairs = "-" if r["pairs"] is None else f"{r['pairs']:,}"
        lines.append(
            f"| {r['round']} | {r['when']:%Y-%m-%d %H:%M} | {r['job_s']:.1f} | {r['job_rss'] / 2**30:.2f} | "
            f"{r['hand']['seconds']:.1f} | {r['hand_rss'] / 2**30:.2f} | {r['job_s'] / r['hand']['seconds']:.2f}x | "
            f"{pairs} | {s['realized']:,} / {s['existing']:,} / {s['exited']:,} | {r['load'][0]} → {r['load'][1]} |"
        )
    lines += [
        "",
        "Member reads through the client (`audiences.members`, first page of 100, 20 audiences; s):",
        "",
    ]
    for r in rows:
        m = r["reads"]
        lines.append(
            f"- round {r['round']}: latest median {m['latest']['median']:.3f} (max {m['latest']['max']:.3f}); "
            f"as of round 1's time median {m['as_of']['median']:.3f} (max {m['as_of']['max']:.3f})"
        )
    lines += ["", "Memberships on disk per evaluation (all audiences):", ""]
    for r in rows:
        d = r["disk"]
        lines.append(
            f"- round {r['round']}: {d['files_bytes'] / 1e6:.1f} MB of membership files for {d['rows']:,} rows "
            f"({d['b_per_row']:.2f} B/member), identities {d['identities_bytes'] / 1e6:.1f} MB "
            f"(total {(d['files_bytes'] + d['identities_bytes']) / max(d['rows'], 1):.2f} B/member)"
        )
    lines += ["", "The job's `metrics.phasesInMs` (s):", ""]
    names = [
        "storeRefresh",
        "dagsterLaunch",
        "preparation",
        "evaluation",
        "identities",
        "membershipDiff",
        "publication",
        "dagsterFinish",
    ]
    lines.append("| round | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for r in rows:
        lines.append(
            f"| {r['round']} | " + " | ".join(f"{r['phases'].get(n, 0) / 1000:.1f}" for n in names) + " |"
        )
    lines += ["", "Hand-written SQL per kind (s): "]
    for r in rows:
        lines.append(
            f"- round {r['round']}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["hand"]["by_kind"].items())
        )
    if floor_figures:
        f = floor_figures
        n = f["pairs_n"]
        lines += [
            "",
            f"Floor and formats, on the last round's {n:,} hand-written pairs (load {f['load'][0]} → {f['load'][1]}):"
            f" read every needed column and group the events by profile {f['read_group']:.1f} s; write the pairs "
            f"as strings {f['pairs']:.1f} s ({f['pairs_bytes'] / n:.2f} B/pair); as today's membership files "
            f"(per audience, each row with its identityMap) {f['pairs_identities']:.1f} s "
            f"({f['pairs_identities_bytes'] / n:.2f} B/member); as sorted integer pairs over a profile index "
            f"{f['int_pairs']:.1f} s ({f['int_pairs_bytes'] / n:.2f} B/member) plus the identities once per "
            f"profile {f['identities_once']:.1f} s ({f['identities_once_bytes'] / 1e6:.0f} MB).",
        ]
    table = "\n".join(lines)
    print(table)
    if args.record:
        append_result("segment_job.md", "The whole segment job against hand-written SQL (issue 18)", table)


if __name__ == "__main__":
    main()
