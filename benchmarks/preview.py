"""Benchmark of previews and estimates (issue 16) against a full evaluation of the same definition, same run.

    .venv/bin/python benchmarks/preview.py [--profiles 1000000] [--events 20000000] [--chunks N] [--record]
                                           [--service] [--rounds 3] [--work DIR]
                                           [--coverage-sample 50000 --coverage-seeds 3]

Data: the seeded synthetic store of ``benchmarks/evaluation.py`` (generated into ``benchmarks/.data/`` once and
reused; read only). Everything this benchmark writes goes to ``--work`` (default ``benchmarks/.work/``): the sample,
drawn once with ``engine/sampling.py`` at the platform's tier (the whole store below 1M profiles, 1M for 1M-20M: at
1M profiles the sample is the whole store, cut in random chunks: an eighth, then the rest) and reused while present
("the sample prepared"; its drawing time is reported), and the evaluation outputs.

``--service``: the user's path, on a home folder under ``--work`` whose profile store is built once by ingesting
the same data through the in-process client (``datasets.upload``: profiles and events as Parquet, the events
carrying their person's ECID). Per round: ``POST /preview`` of the definition through ``client.previews``, then
``GET /estimate`` polled every 10 ms (first estimate: the first answer with profiles read; exact: ``RESULT_READY``)
and ``GET /preview`` once 1000 matches are read (first page: 1000 results with identities); then a full segment
job of the same definition at the preview's evaluation time through ``client.segment_jobs.create(wait=True)``
(in-process: a Dagster run, the evaluation, the membership diff and publication), and one bare engine evaluation
of the whole store (a full pass, the job's evaluation step alone).

Otherwise measured in this process, each twice (cold = first in the process, then warm), for one realistic
definition, on the sample and the benchmark data directly:

* the estimate as ``POST /preview`` computes it: the chunks evaluated in order with the segment jobs' engine
  (``sampling.evaluate_chunks``), the time and the 95% interval after the first chunk (what ``GET /estimate``
  shows first), and when every chunk is read (exact at this size);
* the first preview page (1000 profiles with their identities, the service's query) once the chunks read hold
  1000 members; every chunk also runs the service's per-chunk query (namespaces of the matches), as a preview does;
* the baseline: one engine evaluation of the definition over the whole store (what a segment job's evaluation
  step runs; the job adds Dagster and the membership diff on top).

``--coverage-seeds N`` also measures the interval's coverage over 200 random definitions for N samples of
``--coverage-sample`` profiles (true sizes from one full evaluation of all 200).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from evaluation import DATA, EVENT_SCHEMA, NOW, PROFILE_SCHEMA, definitions, prepare
from results_file import append_result

Q = "__preview__"  # the service's audience id of a previewed expression
DEFINITION = (
    'homeAddress.countryCode = "US" and xEvent[eventType = "commerce.purchases" and '
    "timestamp occurs <= 30 days before today].count() >= 1"
)


def load() -> str:
    return (
        subprocess.run(["uptime"], capture_output=True, text=True)
        .stdout.strip()
        .split("load average:")[-1]
        .strip()
    )


def first_page(output: Path, profiles: Path, limit: int = 1000) -> list:
    """The service's page query (service/previews.py ``_page``) on one chunk's output."""
    import duckdb

    con = duckdb.connect()
    try:
        return con.execute(
            f"SELECT k.profile_id, p.identityMap FROM (SELECT profile_id FROM read_parquet('{output}') "
            f"WHERE audience_id = '{Q}' ORDER BY profile_id LIMIT {limit}) AS k "
            f"LEFT JOIN read_parquet('{profiles}') AS p USING (profile_id) ORDER BY k.profile_id"
        ).fetchall()
    finally:
        con.close()


def preview_once(sample, definition, schema, work: Path) -> dict:
    from types import SimpleNamespace

    from segmentation_pipelines.engine import sampling
    from segmentation_pipelines.service.previews import _chunk_extras

    started = time.perf_counter()
    marks: list[tuple[float, int, int]] = []
    page: dict = {}
    outputs: list = []

    def on_chunk(r) -> None:
        _chunk_extras(
            SimpleNamespace(base=None), r.output_path, sample.chunks[r.index].namespaces_path
        )  # as served
        marks.append((time.perf_counter() - started, r.profiles, r.counts[Q]))
        outputs.append((r.output_path, sample.chunks[r.index].profiles_path, r.counts[Q]))
        # The service serves page 1 once the chunks read hold 1000 members (or all are read).
        if not page and (sum(n for *_, n in outputs) >= 1000 or len(outputs) == len(sample.chunks)):
            rows = []
            for output, profiles, _n in outputs:
                rows += first_page(output, profiles, 1000 - len(rows))
                if len(rows) >= 1000:
                    break
            page["seconds"] = time.perf_counter() - started
            page["rows"] = len(rows)

    sampling.evaluate_chunks(sample, [definition], schema, NOW, work, on_chunk=on_chunk)
    read = matched = 0
    first = None
    for _t, p, m in marks:
        read += p
        matched += m
        if first is None:
            first = sampling.estimate(matched, read, sample.total_profiles)
    final = sampling.estimate(matched, read, sample.total_profiles)
    return {
        "first_s": marks[0][0],
        "first": first,
        "all_s": marks[-1][0],
        "final": final,
        "page_s": page["seconds"],
        "page_rows": page["rows"],
    }


def full_once(definition, schema, folder: Path, work: Path) -> tuple[float, int]:
    from segmentation_pipelines import engine

    started = time.perf_counter()
    result = engine.evaluate(
        engine.EvaluationRequest(
            [definition], folder / "profiles.parquet", folder / "events", NOW, work / "full.parquet", schema
        )
    )
    return time.perf_counter() - started, result.counts[Q]


def ingested_home(folder: Path, work: Path) -> Path:
    """A home whose profile store holds ``folder``'s data, ingested once through the in-process client."""
    import duckdb

    from segmentation_pipelines import SegmentationClient

    home, ready = work / "home", work / "home.ready"
    if ready.exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    files = work / "ingest"
    files.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET memory_limit = '3GB'")
    con.execute(f"SET temp_directory = '{files / 'spill'}'")
    con.execute(
        f"COPY (SELECT * EXCLUDE (profile_id) FROM read_parquet('{folder / 'profiles.parquet'}')) "
        f"TO '{files / 'profiles.parquet'}' (FORMAT parquet)"
    )
    # Events as a source sends them: with the identity of their person (the primary ECID), not the store's key.
    con.execute(
        f"COPY (SELECT e.* EXCLUDE (profile_id), [{{'key': 'ECID', 'value': [{{'id': p.ecid, 'primary': true}}]}}] "
        f"AS identityMap FROM read_parquet('{folder / 'events'}/*.parquet') AS e JOIN (SELECT profile_id, "
        f"identityMap[1].value[1].id AS ecid FROM read_parquet('{folder / 'profiles.parquet'}')) AS p "
        f"USING (profile_id)) TO '{files / 'events.parquet'}' (FORMAT parquet)"
    )
    con.close()
    with SegmentationClient(home=home) as client:
        people = client.datasets.create({"name": "crm", "schema": {"name": "_xdm.context.profile"}})
        events = client.datasets.create({"name": "web", "schema": {"name": "_xdm.context.experienceevent"}})
        for dataset, name in ((people, "profiles.parquet"), (events, "events.parquet")):
            batch = client.datasets.upload(dataset["id"], [files / name])
            # A store that did not become current (a refresh that failed: disk, memory) is no home to measure.
            store = batch.get("profileStore") or {}
            assert batch["status"] == "success" and store.get("status") == "current", (name, batch)
    shutil.rmtree(files, ignore_errors=True)
    ready.write_text(f"{time.perf_counter() - started:.0f} s")
    return home


def service_round(client, definition_id: str, layout, schema, work: Path) -> dict:
    """One preview through the client (polled as a UI would), the full segment job, one bare full pass."""
    from segmentation_pipelines import engine, pql
    from segmentation_pipelines.timeutil import parse_time

    out: dict = {}
    started = time.perf_counter()
    preview = client.previews.create({"predicateExpression": DEFINITION})
    while True:
        estimate = client.estimates.get(preview["previewId"])
        now = time.perf_counter() - started
        if estimate["profilesReadSoFar"] and "first_s" not in out:
            out["first_s"], out["first"] = now, estimate
        if estimate["profilesMatchedSoFar"] >= 1000 or estimate["state"] in ("RESULT_READY", "FAILED"):
            if "page_s" not in out:
                page = client.previews.get(preview["previewId"], offset=0, limit=1000)
                if len(page["results"]) == 1000 or page["state"] == "RESULT_READY":
                    out["page_s"], out["page_rows"] = time.perf_counter() - started, len(page["results"])
        if estimate["state"] in ("RESULT_READY", "FAILED"):
            assert estimate["state"] == "RESULT_READY", estimate
            out["all_s"], out["final"] = now, estimate
            break
        time.sleep(0.01)
    when = parse_time(estimate["evaluationTime"])
    started = time.perf_counter()
    job = client.segment_jobs.create([{"segmentId": definition_id}], evaluation_time=when, wait=True)
    out["job_s"] = time.perf_counter() - started
    assert job["status"] == "SUCCEEDED", job.get("errors")
    policy = client.segment_definitions.get(definition_id)["mergePolicyId"]
    started = time.perf_counter()
    result = engine.evaluate(
        engine.EvaluationRequest(
            [engine.EngineDefinition(Q, pql.parse(DEFINITION))],
            layout.profiles_path(policy),
            Path(layout.events_path()).parent,
            when,
            work / "full.parquet",
            schema,
        )
    )
    out["full_s"], out["full_n"] = time.perf_counter() - started, result.counts[Q]
    return out


def service_rounds(folder: Path, work: Path, rounds: int) -> tuple[list[dict], dict]:
    from segmentation_pipelines import SegmentationClient
    from segmentation_pipelines.profiles.layout import StoreLayout
    from segmentation_pipelines.service.segment_pql import profile_schema

    home = ingested_home(folder, work)
    with SegmentationClient(home=home) as client:
        existing = client.segment_definitions.list()["segments"]
        definition = next((d for d in existing if d["name"] == "Recent US buyers"), None) or (
            client.segment_definitions.create(
                {
                    "name": "Recent US buyers",
                    "expression": {"type": "PQL", "format": "pql/text", "value": DEFINITION},
                }
            )
        )
        from segmentation_pipelines.service.previews import PreviewsService

        drawn = PreviewsService(client.ctx).prepare_sample()  # "the sample prepared"
        layout = StoreLayout(client.ctx.sandbox_root)
        schema = profile_schema(client.ctx)
        out = []
        for i in range(rounds):
            before = load()
            r = service_round(client, definition["id"], layout, schema, work)
            r["load"] = (before, load())
            r["label"] = f"round {i + 1}"
            out.append(r)
    return out, drawn


def distinct_definitions(n: int = 200, seed: int = 11) -> list[tuple[str, str]]:
    """``n`` distinct random definitions of benchmarks/evaluation.py's templates: its generator repeats some texts
    (a template with 3 choices), and identical definitions would count one sampling error several times."""
    import re

    for pool in range(n, 20 * n, n):
        seen: set[str] = set()
        out: list[tuple[str, str]] = []
        for ident, text in definitions(pool, seed=seed):
            refs = set(re.findall(r'inSegment\("([^"]+)"\)', text))
            if text in seen or not refs <= {i for i, _ in out}:
                continue
            seen.add(text)
            out.append((ident, text))
        if len(out) >= n:
            return out[:n]
    raise ValueError(f"the templates do not give {n} distinct definitions")


def coverage(
    folder: Path, schema, size: int, seeds: int, work: Path
) -> list[tuple[int, float, float, float]]:
    from segmentation_pipelines import engine, pql
    from segmentation_pipelines.engine import sampling

    defs = [engine.EngineDefinition(i, pql.parse(t)) for i, t in distinct_definitions(200, seed=11)]
    truth = engine.evaluate(
        engine.EvaluationRequest(
            defs, folder / "profiles.parquet", folder / "events", NOW, work / "truth.parquet", schema
        )
    )
    out = []
    for seed in range(seeds):
        sample = sampling.build_sample(
            folder / "profiles.parquet", folder / "events", work / f"cov-{seed}", size=size, seed=100 + seed
        )
        results = sampling.evaluate_chunks(sample, defs, schema, NOW, work / f"cov-{seed}-out")
        inside, zs = 0, []
        for d in defs:
            matched = sum(r.counts[d.id] for r in results)
            e = sampling.estimate(matched, sample.size, sample.total_profiles)
            inside += e.low <= truth.counts[d.id] <= e.high
            if (
                e.standard_error > 0
            ):  # (estimate - truth) / standard error: mean 0, sd 1 if the error is honest
                zs.append((e.size - truth.counts[d.id]) / e.standard_error)
        out.append((seed, inside / len(defs), statistics.mean(zs), statistics.pstdev(zs)))
    return out


def service_table(args, rows: list[dict], drawn: dict) -> list[str]:
    lines = [
        f"Service path (`--service`): sample {drawn['numRowsToRead']:,} of {drawn['totalRows']:,} profiles in "
        f"{drawn['chunks']} chunks, drawn in {drawn['drawSeconds']:.1f} s.",
        "",
        "| round | first estimate (s) | its 95% interval | first page, 1000 results (s) | exact / all read (s) | "
        "final estimate | full pass (s) | segment job (s) | all read / full pass | load before → after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f, z = r["first"], r["final"]
        lines.append(
            f"| {r['label']} | {r['first_s']:.2f} | {f['estimatedSize']:,} [{f['estimatedSizeLow']:,}, "
            f"{f['estimatedSizeHigh']:,}] | {r['page_s']:.2f} ({r['page_rows']}) | {r['all_s']:.2f} | "
            f"{z['estimatedSize']:,} | {r['full_s']:.2f} ({r['full_n']:,}) | {r['job_s']:.2f} | "
            f"{r['all_s'] / r['full_s']:.2f} | {r['load'][0]} → {r['load'][1]} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--chunks", type=int, default=None, help="default: engine/sampling.py default_chunks")
    ap.add_argument("--coverage-sample", type=int, default=50_000)
    ap.add_argument("--coverage-seeds", type=int, default=0)
    ap.add_argument("--service", action="store_true", help="through the client, with the full segment job")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the --service measurement")
    ap.add_argument(
        "--engine-rounds", action="store_true", help="with --service: the engine-level rounds too"
    )
    ap.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / ".work")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    from segmentation_pipelines import engine, pql
    from segmentation_pipelines.engine import sampling
    from segmentation_pipelines.pql.schema import Schema

    folder = DATA / f"p{args.profiles}-e{args.events}"
    prepare(folder, args.profiles, args.events)
    work_root = args.work / folder.name
    work_root.mkdir(parents=True, exist_ok=True)
    schema = Schema.from_dicts(profile=PROFILE_SCHEMA, event=EVENT_SCHEMA)
    lines_service: list[str] = []
    if args.service:
        rows_service, drawn_service = service_rounds(folder, work_root / "service", args.rounds)
        lines_service = service_table(args, rows_service, drawn_service)
    rows = []
    sample = None
    drawn = "reused"
    if not args.service or args.engine_rounds:
        size = sampling.sample_size(args.profiles)
        chunks = args.chunks or sampling.default_chunks(size)
        sample_folder = work_root / f"preview-sample-{size}-{chunks}"
        sample = sampling.Sample.load(sample_folder)
        if sample is None:
            shutil.rmtree(sample_folder, ignore_errors=True)
            started = time.perf_counter()
            sample = sampling.build_sample(
                folder / "profiles.parquet", folder / "events", sample_folder, size=size, chunks=chunks
            )
            drawn = f"{time.perf_counter() - started:.1f} s"
        definition = engine.EngineDefinition(Q, pql.parse(DEFINITION))
        work = work_root / f"preview-work-{os.getpid()}"
        for label in ("cold", "warm"):
            before = load()
            p = preview_once(sample, definition, schema, work / label)
            full_s, full_n = full_once(definition, schema, folder, work / label)
            rows.append((label, p, full_s, full_n, before, load()))
        shutil.rmtree(work, ignore_errors=True)

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = (
        f"`.venv/bin/python benchmarks/preview.py --profiles {args.profiles} --events {args.events}"
        f"{' --chunks ' + str(args.chunks) if args.chunks else ''}"
        f"{' --service --rounds ' + str(args.rounds) if args.service else ''}"
        f"{' --engine-rounds' if args.engine_rounds else ''}"
        f"{' --coverage-seeds ' + str(args.coverage_seeds) if args.coverage_seeds else ''}`"
    )
    lines = [
        f"### {stamp} — {args.profiles:,} profiles, {args.events:,} events, 2 cores",
        "",
        f"Command: {command}. Definition: `{DEFINITION}`.",
        "",
        *lines_service,
    ]
    if rows:
        lines += [
            "",
            f"Engine level: sample {sample.size:,} in {len(sample.chunks)} chunks (drawn: {drawn}).",
            "",
            "| run | first estimate (s) | its 95% interval | first page, 1000 profiles (s) | all chunks read (s) | "
            "final estimate | full evaluation (s) | true size | full / first estimate | full / first page | "
            "load before → after |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    for label, p, full_s, full_n, before, after in rows:
        f, z = p["first"], p["final"]
        lines.append(
            f"| {label} | {p['first_s']:.2f} | {f.size:,} [{f.low:,}, {f.high:,}] | {p['page_s']:.2f} "
            f"({p['page_rows']} rows) | {p['all_s']:.2f} | {z.size:,} [{z.low:,}, {z.high:,}] | {full_s:.2f} | "
            f"{full_n:,} | {full_s / p['first_s']:.1f}x | {full_s / p['page_s']:.1f}x | {before} → {after} |"
        )
    if args.coverage_seeds:
        cov = coverage(folder, schema, args.coverage_sample, args.coverage_seeds, work_root / "coverage-work")
        shutil.rmtree(work_root / "coverage-work", ignore_errors=True)
        figures = ", ".join(f"seed {s}: {c:.1%} (z mean {zm:+.2f}, sd {zs:.2f})" for s, c, zm, zs in cov)
        mean = sum(c for _, c, _, _ in cov) / len(cov)
        lines += [
            "",
            f"Coverage of the 95% interval, 200 distinct random definitions (benchmarks/evaluation.py templates, seed 11), "
            f"samples of {args.coverage_sample:,} profiles: {figures}; mean {mean:.1%} (load {load()}).",
        ]
    table = "\n".join(lines)
    print(table)
    if args.record:
        append_result("preview.md", "Preview and estimate benchmark (issue 16)", table)


if __name__ == "__main__":
    main()
