"""Time ways of writing the keyed events store (the full build's one big statement) on a home made by
``benchmarks/profile_store.py --data ... --keep``: the join alone, the join written unsorted (the floor of any
layout that rewrites every event), the current global ``ORDER BY profile_id``, and alternatives to it.

    flock /tmp/sp-bench.lock .venv/bin/python benchmarks/profile_store_events_variants.py HOME current nosort

Variants (each writes into a scratch folder, deleted first):

* ``count``: the keyed join, counted (reads only the identity columns).
* ``nosort``: the keyed join written as 30,720-row files, no ORDER BY.
* ``current``: what ``events_store.full_build`` does: ``ORDER BY profile_id``, 30,720-row files.
* ``intkey``: the same order through an INTEGER rank of the profile id instead of the 32-character id.
* ``uncompressed``: ``current`` written without Snappy.
* ``rangesK``: K statements, each reading every event and sorting and writing the events of one K-th of the
  profiles (each sort is smaller; every statement reads all events).
* ``bucketK``: a key-only pass counts each profile's events, profiles are cut into K ranges of equal events, one
  ``PARTITION_BY`` copy writes the ranges unsorted, then each range is sorted and written (no global sort).
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segmentation_pipelines import duck  # noqa: E402

FILES = "FORMAT PARQUET, COMPRESSION SNAPPY, ROW_GROUP_SIZE 30720, ROW_GROUPS_PER_FILE 1"


def main(argv: list[str]) -> int:
    home, variants = Path(argv[0]), argv[1:]
    sandbox = next(home.glob("data/*/*/store")).parent
    ids = os.path.realpath(sandbox / "store/identity_graph/current/identities.parquet")
    events_ds = {p.parent.parent.name for p in sandbox.glob("datasets/*/*/part-*.parquet")}
    # The events dataset: the one whose files have a timestamp column (the benchmark ingests one).
    import duckdb

    files = []
    for ds in sorted(events_ds):
        fs = sorted(glob.glob(str(sandbox / "datasets" / ds / "*" / "part-*.parquet")))
        cols = {r[0] for r in duckdb.execute(f"DESCRIBE SELECT * FROM read_parquet('{fs[0]}')").fetchall()}
        if "timestamp" in cols:
            files += fs
    out = Path("/tmp/sp-events-variants")
    src = "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "], union_by_name=true)"
    ids_rel = f"(SELECT namespace, id, profile_id FROM read_parquet('{ids}') WHERE NOT excluded)"
    on = "i.namespace = e.identityMap[1].key AND i.id = e.identityMap[1].value[1].id"
    keyed = f"SELECT i.profile_id, e.* FROM {src} e JOIN {ids_rel} i ON {on}"

    for v in variants:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        con = duck.connect(out / "spill")
        started = time.perf_counter()

        def timed(label, sql, con=con):
            t = time.perf_counter()
            rows = con.execute(sql).fetchall()
            print(f"    {time.perf_counter() - t:7.2f} s  {label} {rows[:1]}", flush=True)

        if v == "count":
            timed("count of the keyed join", f"SELECT count(*) FROM ({keyed})")
        elif v == "nosort":
            timed("copy, unsorted", f"COPY ({keyed}) TO '{out}/x' ({FILES})")
        elif v == "current":
            timed(
                "copy, ORDER BY profile_id",
                f"COPY (SELECT * FROM ({keyed}) ORDER BY profile_id) TO '{out}/x' ({FILES})",
            )
        elif v == "uncompressed":
            timed(
                "copy, ORDER BY profile_id, uncompressed",
                f"COPY (SELECT * FROM ({keyed}) ORDER BY profile_id) TO '{out}/x' "
                f"({FILES.replace('SNAPPY', 'UNCOMPRESSED')})",
            )
        elif v == "intkey":
            timed(
                "ids ranked",
                f"""CREATE TEMP TABLE ids AS SELECT namespace, id, profile_id,
                    dense_rank() OVER (ORDER BY profile_id)::INTEGER AS k FROM {ids_rel}""",
            )
            timed(
                "copy, ORDER BY integer rank",
                f"""COPY (SELECT * EXCLUDE (k) FROM (SELECT i.k, i.profile_id, e.* FROM {src} e JOIN ids i ON {on})
                    ORDER BY k) TO '{out}/x' ({FILES})""",
            )
        elif v.startswith("ranges"):
            k = int(v[6:] or 2)
            timed(
                "ids ranked",
                f"""CREATE TEMP TABLE ids AS SELECT namespace, id, profile_id,
                    dense_rank() OVER (ORDER BY profile_id)::INTEGER AS k FROM {ids_rel}""",
            )
            top = con.execute("SELECT max(k) FROM ids").fetchone()[0]
            for r in range(k):
                lo, hi = top * r // k, top * (r + 1) // k
                timed(
                    f"copy of profile range {r + 1}/{k}, ORDER BY profile_id",
                    f"""COPY (SELECT i.profile_id, e.* FROM {src} e JOIN (SELECT * FROM ids WHERE k > {lo}
                        AND k <= {hi}) i ON {on} ORDER BY i.profile_id) TO '{out}/r{r}' ({FILES})""",
                )
        elif v.startswith("bucket"):
            k = int(v[6:] or 16)
            timed(
                "events per profile (key-only pass)",
                f"""CREATE TEMP TABLE pc AS SELECT i.profile_id, count(*) AS n FROM
                    (SELECT identityMap[1].key AS k, identityMap[1].value[1].id AS v FROM {src}) e
                    JOIN {ids_rel} i ON i.namespace = e.k AND i.id = e.v GROUP BY ALL""",
            )
            timed(
                "identities with their range",
                f"""CREATE TEMP TABLE ib AS SELECT i.namespace, i.id, i.profile_id, b.b FROM {ids_rel} i JOIN (
                    SELECT profile_id, (sum(n) OVER (ORDER BY profile_id ROWS UNBOUNDED PRECEDING) - n) * {k}
                    // (SELECT sum(n) FROM pc) AS b FROM pc) b USING (profile_id)""",
            )
            timed(
                f"PARTITION_BY copy into {k} ranges",
                f"""COPY (SELECT i.b, i.profile_id, e.* FROM {src} e JOIN ib i ON {on})
                    TO '{out}/s' (FORMAT PARQUET, COMPRESSION UNCOMPRESSED, PARTITION_BY (b))""",
            )
            t = time.perf_counter()
            for d in sorted((out / "s").glob("b=*")):
                b = int(d.name.split("=")[1])
                con.execute(
                    f"""COPY (SELECT * EXCLUDE (b) FROM read_parquet('{d}/*.parquet') ORDER BY profile_id)
                        TO '{out}/f{b:04d}' ({FILES})"""
                )
            print(f"    {time.perf_counter() - t:7.2f} s  each range sorted and written", flush=True)
        else:
            raise SystemExit(f"unknown variant {v}")
        print(f"  {v}: {time.perf_counter() - started:.2f} s", flush=True)
        con.close()
    shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
