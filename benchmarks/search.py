"""Benchmark of segment search over N segment definitions: tantivy (what /search/* runs) against DuckDB.

    .venv/bin/python benchmarks/search.py [--size 4000] [--repeat 50] [--home /tmp/search-bench] [--reuse]

Seeds one sandbox through the in-process client (``--size`` definitions with varied names and descriptions, filed
in 40 folders two levels deep), then times, per query, ``client.search.entities(...)`` end to end in this process:
the catalog fingerprint read, the Lucene parse, the index search, the sort (folders first) and the first page of
50 entities. Also timed: the full index build (the baseline: what every first search after a catalog change cost
before the index was kept current incrementally), the first search after a create / update / delete / folder
rename (``after_change``), and, for comparison, the same
leaf queries over a DuckDB token table (``entity, field, position, token``; equality, ``LIKE``, ``levenshtein``,
``regexp_full_match``, a positional self-join for phrases) since DuckDB's ``fts`` extension downloads on first use
and is not allowed. Wall-clock (``time.perf_counter``) medians and 95th percentiles, in ms.
Target (issue 17): a search over 4,000 definitions answers in <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402

from segmentation_pipelines import SegmentationClient  # noqa: E402
from segmentation_pipelines.search.index import tokens  # noqa: E402

WORDS = (
    "red blue green gold silver bronze car bike garden rose tulip loyal premium churn risk high value young "
    "senior family travel hotel flight summer winter sale discount newsletter mobile web store visitor buyer "
    "cart abandon repeat first last week month year email push sms"
).split()
QUERIES = {
    "term": "segmentName:garden",
    "two terms (OR)": "garden tulip",
    "AND NOT": "segmentName:car AND NOT segmentDescription:red",
    "wildcard": "segmentName:gar*",
    "wildcard ?": "segmentName:t?lip",
    "fuzzy ~2": "segmentName:gardn~",
    "fuzzy ~1": "segmentName:tulp~1",
    "phrase": 'segmentDescription:"red car"',
    "proximity ~3": 'segmentDescription:"red garden"~3',
    "regex": "segmentName:/tul[a-z]+/",
    "folder browse": None,
    "everything": "",
}


def seed(client: SegmentationClient, size: int, data: Path) -> None:
    rows = data / "crm.jsonl"
    rows.write_text(
        json.dumps({"identityMap": {"Email": [{"id": "a@x.com", "primary": True}]}, "loyalty": {"points": 1}})
        + "\n"
    )
    dataset = client.datasets.create({"name": "crm", "xdmClass": "_xdm.context.profile"})
    client.datasets.ingest(dataset["id"], [str(rows)])
    rng = random.Random(17)
    top = [client.folders.create({"name": f"Team {i}"})["id"] for i in range(8)]
    folders = top + [
        client.folders.create({"name": f"Campaign {i}", "parentFolderId": top[i % 8]})["id"]
        for i in range(32)
    ]
    for i in range(size):
        name = " ".join(rng.sample(WORDS, 3)) + f" {i}"
        description = " ".join(rng.choice(WORDS) for _ in range(8))
        client.segment_definitions.create(
            {
                "name": name,
                "description": description,
                "expression": {"type": "PQL", "format": "pql/text", "value": f"loyalty.points > {i}"},
                "folderId": rng.choice(folders) if i % 4 else "root",
            }
        )


def timed(fn, repeat: int) -> tuple[float, float, object]:
    samples, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], result


def duckdb_tables(client: SegmentationClient) -> duckdb.DuckDBPyConnection:
    entities, page = [], 0
    while True:
        chunk = client.segment_definitions.list(limit=1000, start=page * 1000)["segments"]
        if not chunk:
            break
        entities += chunk
        page += 1
    con = duckdb.connect()
    con.execute("CREATE TABLE tok (entity VARCHAR, field VARCHAR, pos INTEGER, token VARCHAR)")
    rows = [
        (d["id"], field, i, t)
        for d in entities
        for field, text in (("segmentName", d["name"]), ("segmentDescription", d.get("description", "")))
        for i, t in enumerate(tokens(text))
    ]
    con.executemany("INSERT INTO tok VALUES (?, ?, ?, ?)", rows)
    return con


DUCKDB_SQL = {
    "term": "SELECT DISTINCT entity FROM tok WHERE field = 'segmentName' AND token = 'garden'",
    "wildcard": "SELECT DISTINCT entity FROM tok WHERE field = 'segmentName' AND token LIKE 'gar%'",
    "fuzzy ~2": "SELECT DISTINCT entity FROM tok WHERE field = 'segmentName' AND levenshtein(token, 'gardn') <= 2",
    "phrase": (
        "SELECT DISTINCT a.entity FROM tok a JOIN tok b ON a.entity = b.entity AND a.field = b.field "
        "AND b.pos = a.pos + 1 WHERE a.field = 'segmentDescription' AND a.token = 'red' AND b.token = 'car'"
    ),
    "regex": (
        "SELECT DISTINCT entity FROM tok WHERE field = 'segmentName' AND regexp_full_match(token, 'tul[a-z]+')"
    ),
}


def after_change(client: SegmentationClient, folder: str, rebuild_ms: float, repeat: int) -> None:
    """The first search after each kind of catalog change (the change itself untimed), end to end: what a user
    waits for after a create, an update (rename and refile), a delete, and a folder rename. Twice: the change made
    in this process (its commit brings the index current, ``service/search.py::_after_commit``), and as if made by
    another process (the commit hook is skipped by forgetting the catalog, so the search catches up itself)."""
    from segmentation_pipelines.service import search as search_module

    first = lambda: client.search.entities(namespace="AEPSegments", s="segmentName:garden")  # noqa: E731
    first()  # current index
    print(
        "\n| first search after a | change made by | median ms | max ms | ratio to the full build (median) |"
    )
    print("|---|---|---|---|---|")
    for label, elsewhere in (("this process", False), ("another process", True)):
        samples: dict[str, list[float]] = {"create": [], "update": [], "delete": [], "folder rename": []}

        def first_after(kind: str, forget: bool = elsewhere, samples: dict = samples) -> None:
            samples[kind].append(timed(first, 1)[0])
            if forget:  # the next change: no index here to keep current, like a write from elsewhere
                search_module._catalogs.clear()

        first_after("create")  # sets up the first change; its sample is dropped below
        samples["create"].clear()
        for i in range(max(5, repeat // 4)):
            created = client.segment_definitions.create(
                {
                    "name": f"garden bench {label} {i}",
                    "description": "added after the index was built",
                    "expression": {"type": "PQL", "format": "pql/text", "value": "loyalty.points > 1"},
                }
            )
            first_after("create")
            body = client.segment_definitions.get(created["id"])
            client.segment_definitions.update(
                created["id"], {**body, "name": f"garden bench {label} {i} b", "folderId": folder}
            )
            first_after("update")
            client.segment_definitions.delete(created["id"])
            first_after("delete")
            client.folders.update(folder, [{"op": "replace", "path": "/name", "value": f"Team {label} {i}"}])
            first_after("folder rename")
        for kind, values in samples.items():
            median = statistics.median(values)
            print(f"| {kind} | {label} | {median:.1f} | {max(values):.1f} | {median / rebuild_ms:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--home", default="/tmp/search-bench")
    parser.add_argument("--reuse", action="store_true", help="measure on the sandbox a previous run seeded")
    args = parser.parse_args()
    home = Path(args.home)
    if not args.reuse:
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
    client = SegmentationClient(home=home / "home")
    if not args.reuse:
        start = time.perf_counter()
        seed(client, args.size, home)
        elapsed = time.perf_counter() - start
        print(f"seeded {args.size} definitions + 40 folders through the client in {elapsed:.1f} s")

    from segmentation_pipelines.service.search import SearchService

    service = SearchService(client.ctx)
    rebuilds = []
    for _ in range(5):
        from segmentation_pipelines.service import search as search_module

        search_module._cache.clear()
        t0 = time.perf_counter()
        service.index()
        rebuilds.append((time.perf_counter() - t0) * 1000)
    folder = client.folders.list()["children"][0]["id"]
    total = client.search.namespaces()["namespaces"][0]["count"]
    print(
        f"\nbaseline, full index build (every first search after a change before issue 17's incremental index), "
        f"{total} entities: median {statistics.median(rebuilds):.1f} ms, max {max(rebuilds):.1f} ms"
    )
    after_change(client, folder, statistics.median(rebuilds), args.repeat)
    print("\n| query | s | tantivy median ms | p95 ms | matches | DuckDB token table median ms |")
    print("|---|---|---|---|---|---|")
    con = duckdb_tables(client)
    for label, s in QUERIES.items():
        if s is None:
            call = lambda: client.search.entities(namespace="AEPSegments", entityId=folder)  # noqa: E731
            shown = f"entityId={folder[:8]}…"
        else:
            call = lambda s=s: client.search.entities(namespace="AEPSegments", s=s)  # noqa: E731
            shown = f"`{s}`"
        median, p95, result = timed(call, args.repeat)
        duck = ""
        if label in DUCKDB_SQL:
            sql = DUCKDB_SQL[label]
            d_median, _, _ = timed(lambda sql=sql: con.execute(sql).fetchall(), args.repeat)
            duck = f"{d_median:.1f}"
        shown = shown.replace("|", "\\|")
        print(f"| {label} | {shown} | {median:.1f} | {p95:.1f} | {result['page']['totalCount']} | {duck} |")
    median, p95, _ = timed(lambda: client.search.namespaces(s="segmentName:gar*"), args.repeat)
    print(f"| namespaces (counts) | `segmentName:gar*` | {median:.1f} | {p95:.1f} | | |")


if __name__ == "__main__":
    main()
