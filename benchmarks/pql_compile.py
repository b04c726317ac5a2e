"""Benchmark of parse + check + compile (issue 4).

    .venv/bin/python benchmarks/pql_compile.py [--many 4000] [--record]

Times, for one realistic definition (median of 200 runs) and for ``--many`` definitions at once: parsing, checking
against the schema, compiling to SQL (sqlglot trees, rendered for DuckDB) and compiling to Polars expressions.
Target: under 5 ms per definition for parse + check + compile.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from evaluation import EVENT_SCHEMA, NOW, PROFILE_SCHEMA, definitions  # noqa: E402
from results_file import append_result  # noqa: E402

from segmentation_pipelines.pql import check, compile_polars, compile_sql, parse  # noqa: E402
from segmentation_pipelines.pql.schema import Schema  # noqa: E402

REALISTIC = (
    'homeAddress.countryCode = "US" and loyalty.tier in ["gold", "platinum"] and '
    'chain(xEvent, timestamp, [A: WHAT(eventType = "commerce.productViews") WHEN(< 7 days before now), '
    'B: WHAT(eventType = "commerce.purchases")]) and '
    '(sum X.commerce.order.priceTotal over X from xEvent where X.commerce.order.currencyCode = "USD") > 100 and '
    'not(personalEmail.address.endsWith(".edu", false))'
)


def _time(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--many", type=int, default=4000)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    schema = Schema.from_dicts(profile=PROFILE_SCHEMA, event=EVENT_SCHEMA)
    q = parse(REALISTIC)
    one = {
        "parse": _time(lambda: parse(REALISTIC), 200),
        "check": _time(lambda: check(q, schema), 200),
        "compile_sql": _time(
            lambda: compile_sql.compile_definition(q, schema, NOW).predicate.sql("duckdb"), 200
        ),
        "compile_polars": _time(lambda: compile_polars.compile_definition(q, schema, NOW), 200),
    }
    texts = [t for _, t in definitions(args.many)]
    many: dict[str, float] = {}
    t = time.perf_counter()
    queries = [parse(x) for x in texts]
    many["parse"] = time.perf_counter() - t
    t = time.perf_counter()
    for x in queries:
        check(x, schema, resolve_audience=lambda a: a)
    many["check"] = time.perf_counter() - t
    t = time.perf_counter()
    for x in queries:
        compile_sql.compile_definition(x, schema, NOW).predicate.sql("duckdb")
    many["compile_sql"] = time.perf_counter() - t
    t = time.perf_counter()
    for x in queries:
        compile_polars.compile_definition(x, schema, NOW)
    many["compile_polars"] = time.perf_counter() - t
    total_one = one["parse"] + one["check"] + one["compile_sql"]
    lines = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `.venv/bin/python benchmarks/pql_compile.py --many {args.many}`",
        "",
        f"| step | one realistic definition (ms, median of 200) | {args.many} definitions (s) |",
        "|---|---|---|",
        *[f"| {k} | {one[k] * 1000:.2f} | {many[k]:.2f} |" for k in one],
        f"| parse + check + compile (SQL) | **{total_one * 1000:.2f}** (target < 5) | "
        f"{many['parse'] + many['check'] + many['compile_sql']:.2f} |",
    ]
    table = "\n".join(lines)
    print(table)
    if args.record:
        append_result("pql_compile.md", "PQL parse + check + compile benchmark (issue 4)", table)


if __name__ == "__main__":
    main()
