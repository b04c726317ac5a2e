"""Benchmark of the PQL front end: parse + check (+ SQL compile) of one realistic definition and of N at once.

    .venv/bin/python benchmarks/pql_frontend.py [--size 4000] [--repeat 200]

Times are CPU time of this process (``time.process_time``: the benchmark box is shared). Prints a table of
per-definition medians (one realistic definition, warmed up) and the total for ``--size``
varied definitions (templates x random values), plus a 10 KB expression. The baseline, measured in the same run, is
``json.loads`` of the definition's pql/json (the cheapest possible way to get a tree from text); ratios are against it.
Target (issue): parse + check + compile of a realistic definition under 5 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segmentation_pipelines.pql import Schema, check, parse, to_json  # noqa: E402

PROFILE = {
    "homeAddress.countryCode": "string",
    "homeAddress.stateProvince": "string",
    "homeAddress.city": "string",
    "person.birthYear": "integer",
    "person.birthDate": "date",
    "person.gender": "string",
    "workEmail.address": "string",
    "loyalty.tier": "string",
    "loyalty.points": "integer",
    "person.favoriteColors[]": "string",
}
EVENT = {
    "timestamp": "date-time",
    "eventType": "string",
    "commerce.order.priceTotal": "number",
    "commerce.order.currencyCode": "string",
    "productListItems[].SKU": "string",
    "productListItems[].priceTotal": "number",
    "web.webPageDetails.name": "string",
}
SCHEMA = Schema.from_dicts(profile=PROFILE, event=EVENT)

REALISTIC = (
    'homeAddress.countryCode = "US" and person.birthYear >= 1980 and loyalty.tier in ["gold", "platinum"] '
    'and workEmail.address.endsWith(".edu", false) '
    'and chain(xEvent, timestamp, [A: WHAT(eventType = "commerce.productViews") WHEN(< 8 days before now), '
    'B: WHAT(eventType = "commerce.productListAdds" and productListItems[SKU = "PS-1"].count() > 0)]) '
    'and not(xEvent[eventType = "commerce.purchases" and (timestamp occurs < 30 days before now)]'
    ".sum(commerce.order.priceTotal) > 500)"
)

TEMPLATES = [
    'homeAddress.countryCode = "{c}" and person.birthYear > {y}',
    'loyalty.points >= {n} and loyalty.tier = "{t}"',
    'chain(xEvent, timestamp, [A: WHAT(eventType = "{e}") WHEN(< {d} days before now)])',
    'xEvent[eventType = "{e}" and (timestamp occurs <= {d} days before today)].count() > {k}',
    'select X from xEvent where X.commerce.order.priceTotal > {n} and X.commerce.order.currencyCode = "USD"',
    'person.favoriteColors.includes("{t}") or homeAddress.city.startsWith("{c}", false)',
    'workEmail.address like "%{c}%" and not(person.gender = "{t}")',
    "(sum X.commerce.order.priceTotal over X from xEvent where X.timestamp occurs last month) > {n}",
]


def definitions(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = rng.sample(TEMPLATES, rng.randint(1, 3))
        values = {
            "c": rng.choice(["US", "CA", "FR", "DE", "MX"]),
            "y": rng.randint(1940, 2005),
            "n": rng.randint(1, 5000),
            "t": rng.choice(["gold", "silver", "red", "blue"]),
            "e": rng.choice(["commerce.purchases", "commerce.productViews", "web.webpagedetails.pageViews"]),
            "d": rng.randint(1, 90),
            "k": rng.randint(0, 10),
        }
        out.append(" and ".join(f"({p.format(**values)})" for p in parts))
    return out


def compiler():
    try:
        from segmentation_pipelines.pql.compile_sql import compile_definition
    except ImportError:
        return None
    now = datetime(2026, 11, 29, tzinfo=UTC)
    return lambda checked: compile_definition(checked, SCHEMA, now)


def median_ms(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        runs.append(time.process_time() - t0)
    return statistics.median(runs) * 1000


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--size", type=int, default=4000, help="number of definitions in the batch run")
    args.add_argument("--repeat", type=int, default=200, help="repetitions for the single-definition medians")
    opts = args.parse_args()
    compile_ = compiler()

    # one realistic definition (warm: the grammar is built once per process)
    query = parse(REALISTIC)
    checked = check(query, SCHEMA)
    if compile_:
        compile_(checked)
    tree_text = json.dumps(to_json(query))
    rows = []
    base = median_ms(lambda: json.loads(tree_text), opts.repeat)
    rows.append(("baseline: json.loads of its pql/json", base))
    p = median_ms(lambda: parse(REALISTIC), opts.repeat)
    rows.append(("parse", p))
    c = median_ms(lambda: check(query, SCHEMA), opts.repeat)
    rows.append(("check", c))
    total_fn = (
        (lambda: compile_(check(parse(REALISTIC), SCHEMA)))
        if compile_
        else (lambda: check(parse(REALISTIC), SCHEMA))
    )
    if compile_:
        rows.append(("compile (SQL)", median_ms(lambda: compile_(checked), opts.repeat)))
    rows.append(("parse + check" + (" + compile" if compile_ else ""), median_ms(total_fn, opts.repeat)))

    big = " and ".join(f'(homeAddress.city = "c{i}" or loyalty.points > {i})' for i in range(250))
    rows.append((f"parse of a {len(big) // 1024} KB expression", median_ms(lambda: parse(big), 5)))

    texts = definitions(opts.size)
    t0 = time.process_time()
    checked_all = [check(parse(text), SCHEMA) for text in texts]
    rows.append((f"{opts.size} definitions, parse + check (total)", (time.process_time() - t0) * 1000))
    if compile_:
        t0 = time.process_time()
        for done in checked_all:
            compile_(done)
        rows.append((f"{opts.size} definitions, compile (total)", (time.process_time() - t0) * 1000))

    print(f"realistic definition: {len(REALISTIC)} characters; --repeat {opts.repeat}")
    print(f"{'step':<62} {'ms':>10} {'x baseline':>11}")
    for name, ms in rows:
        print(f"{name:<62} {ms:>10.3f} {ms / base:>11.1f}")


if __name__ == "__main__":
    main()
