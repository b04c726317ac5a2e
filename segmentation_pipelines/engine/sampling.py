"""Samples of the profile store for previews and estimates, and the estimate with its 95% interval.

A sample is a simple random sample (without replacement) of the merged profiles, drawn by ranking profiles on a
seeded hash of their id, with every event of the sampled profiles. It is written as ``chunks`` folders, each a
range of ranks and so its own random sample (an eighth first, then the rest), holding ``profiles/``, ``events/``
and ``namespaces/`` Parquet files: a preview evaluates the
chunks one after the other with the segment jobs' engine (:func:`evaluate_chunks`), so the estimate refines as it
reads, and after ``k`` chunks the profiles read are still a simple random sample of the store.

Sizes follow the platform's tiers (:func:`sample_size`): the whole store under 1M profiles (the estimate is then
exact), 1M profiles for 1M-20M, 5% above. No catalog, no Dagster: paths in, files and numbers out.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from segmentation_pipelines import duck, engine
from segmentation_pipelines.engine.interrupt import run_interruptible
from segmentation_pipelines.engine.plan import events_source
from segmentation_pipelines.pql.schema import Schema

FULL_STORE_BELOW = 1_000_000
TIER_SIZE = 1_000_000
LARGE_STORE_FROM = 20_000_000
LARGE_FRACTION = 0.05
Z95 = 1.959963984540054
MANIFEST = "sample.json"


def sample_size(total: int) -> int:
    """The platform's tiers: the whole store under 1M profiles, 1M up to 20M, 5% above."""
    if total < FULL_STORE_BELOW:
        return total
    if total <= LARGE_STORE_FROM:
        return min(total, TIER_SIZE)
    return math.ceil(total * LARGE_FRACTION)


MIN_CHUNK = 20_000  # profiles: below this a pass costs more in fixed overhead than it reads
FIRST_FRACTION = 1 / 8  # of the sample read first: the first estimate and (usually) the first page
FORMAT = 2  # of a sample's folder: 2 added each chunk's namespaces file


def default_chunks(size: int) -> int:
    """Chunks of a sample: an eighth first (the first estimate and, for an audience of 1% or more of a 1M sample,
    the first page of 1000 after one pass), then the rest in one pass, so that the exact answer costs one pass
    more than a full evaluation, not one per chunk. A sample too small for that is one chunk."""
    return 2 if size * FIRST_FRACTION >= MIN_CHUNK else 1


def chunk_ends(size: int, chunks: int) -> list[int]:
    """Exclusive end rank of each chunk: the first ends at ``size * FIRST_FRACTION``, the later ones grow by an
    equal factor up to ``size`` (two chunks: an eighth, then the rest)."""
    if chunks <= 1:
        return [size]
    ratio = (1 / FIRST_FRACTION) ** (1 / (chunks - 1))
    ends = [math.ceil(size * FIRST_FRACTION * ratio**i) for i in range(chunks - 1)]
    return [min(e, size) for e in ends] + [size]


@dataclass(frozen=True)
class Chunk:
    profiles_path: Path  # a glob of the chunk's Parquet files of merged profiles
    events_path: Path  # the folder of its events' Parquet files
    profiles: int
    namespaces_path: (
        Path  # (profile_id, namespaces): each profile's identity namespaces (the estimate's counts)
    )


@dataclass
class Sample:
    folder: Path
    total_profiles: int  # profiles of the store
    size: int  # profiles in the sample
    seed: int
    chunks: list[Chunk]
    source: dict[str, Any] = field(default_factory=dict)  # what it was drawn from (the store version)
    built_at: str = ""
    build_seconds: float = 0.0

    @property
    def exact(self) -> bool:
        return self.size >= self.total_profiles

    @classmethod
    def load(cls, folder: Path) -> Sample | None:
        """The sample in ``folder``, or None when there is none (or it is incomplete)."""
        try:
            doc = json.loads((Path(folder) / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if doc.get("format") != FORMAT:  # drawn by an earlier version: drawn again
            return None
        folder = Path(folder).resolve()
        chunks = [
            Chunk(
                folder / c["dir"] / "profiles" / "*.parquet",
                folder / c["dir"] / "events",
                c["profiles"],
                folder / c["dir"] / "namespaces" / "*.parquet",
            )
            for c in doc["chunks"]
        ]
        return cls(
            folder,
            doc["total_profiles"],
            doc["size"],
            doc["seed"],
            chunks,
            doc.get("source", {}),
            doc.get("built_at", ""),
            doc.get("build_seconds", 0.0),
        )


def _lit(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def build_sample(
    profiles_path: str | Path,
    events_path: str | Path,
    folder: Path,
    *,
    size: int | None = None,
    chunks: int | None = None,
    seed: int = 0,
    source: dict[str, Any] | None = None,
    memory_limit: str = "2GB",
    should_cancel: Callable[[], bool] | None = None,
) -> Sample:
    """Draw a sample of ``profiles_path`` (merged profiles) and their events into the empty ``folder``.

    ``size`` defaults to the tiers of :func:`sample_size`; the manifest is written last (a folder without it is
    not a sample)."""
    started = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    con = duck.connect(folder / ".spill", memory_limit)
    try:
        profiles = f"read_parquet({_lit(profiles_path)})"
        events = f"read_parquet({_lit(events_source(events_path))}, union_by_name = true)"
        total = con.execute(f"SELECT count(*) FROM {profiles}").fetchone()[0]
        n = sample_size(total) if size is None else max(0, min(int(size), total))
        k = chunks or default_chunks(n)

        def run(sql: str) -> None:
            run_interruptible(lambda: con.execute(sql), con.interrupt, should_cancel)

        # A seeded hash ranks the profiles: the first n are a simple random sample, and so is every rank range.
        ends = chunk_ends(n, k)
        whens = " ".join(f"WHEN r < {e} THEN {i}" for i, e in enumerate(ends[:-1]))
        chunk_of = f"CASE {whens} ELSE {k - 1} END" if whens else "0"
        run(
            f"CREATE TEMP TABLE pick AS SELECT profile_id, CAST({chunk_of} AS INTEGER) AS chunk FROM ("
            f"SELECT profile_id, row_number() OVER (ORDER BY hash(profile_id, {int(seed)}), profile_id) - 1 AS r "
            f"FROM {profiles}) WHERE r < {n}"
        )
        sizes = dict(con.execute("SELECT chunk, count(*) FROM pick GROUP BY chunk").fetchall())
        staging = folder / ".staging"
        staging.mkdir(exist_ok=True)
        # Each profile's identity namespaces, apart: counting the namespaces of an estimate's matches then reads
        # two small columns, not the identity maps.
        columns = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {profiles}").fetchall()}
        keys = "list_transform(identityMap, lambda e: e.key)" if "identityMap" in columns else "[]::VARCHAR[]"
        namespaces = f"(SELECT profile_id, {keys} AS namespaces FROM {profiles})"
        for part, table in (("profiles", profiles), ("events", events), ("namespaces", namespaces)):
            # One pass per part writes every chunk (a partitioned COPY); the folders are then renamed, so that
            # readers see no hive-style partition column.
            run(
                f"COPY (SELECT t.*, s.chunk AS __chunk FROM {table} AS t JOIN pick AS s USING (profile_id)) "
                f"TO {_lit(staging / part)} (FORMAT parquet, PARTITION_BY (__chunk), OVERWRITE_OR_IGNORE)"
            )
            for c in range(k):
                target = folder / f"chunk-{c:03d}" / part
                target.parent.mkdir(exist_ok=True)
                written = staging / part / f"__chunk={c}"
                if written.is_dir() and any(written.glob("*.parquet")):
                    os.replace(written, target)
                else:  # an empty chunk still has a file, with the columns the engine reads
                    target.mkdir()
                    run(
                        f"COPY (SELECT * FROM {table} LIMIT 0) TO {_lit(target / 'empty.parquet')} (FORMAT parquet)"
                    )
        shutil.rmtree(staging, ignore_errors=True)
    finally:
        con.close()
    shutil.rmtree(folder / ".spill", ignore_errors=True)
    seconds = round(time.perf_counter() - started, 3)
    doc = {
        "format": FORMAT,
        "total_profiles": int(total),
        "size": int(n),
        "seed": int(seed),
        "chunks": [{"dir": f"chunk-{c:03d}", "profiles": int(sizes.get(c, 0))} for c in range(k)],
        "source": source or {},
        "built_at": datetime.now().astimezone().isoformat(),
        "build_seconds": seconds,
    }
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, folder / MANIFEST)
    sample = Sample.load(folder)
    assert sample is not None
    return sample


@dataclass(frozen=True)
class Estimate:
    size: int  # estimated audience size in the store
    standard_error: float
    low: int  # 95% interval
    high: int
    matched: int
    read: int
    total: int


def estimate(matched: int, read: int, total: int) -> Estimate:
    """The store-wide size of an audience from ``matched`` of ``read`` profiles of a simple random sample of a
    store of ``total``: ``total * matched / read``, its standard error with the finite-population correction, and
    a 95% Wilson score interval on the effective sample size (it keeps its coverage for rare audiences, where a
    normal interval around 0 matches would be empty). Exact (zero error) once every profile is read."""
    if read <= 0 or total <= 0:
        return Estimate(0, 0.0, 0, total, matched, read, total)
    if read >= total:
        return Estimate(matched, 0.0, matched, matched, matched, read, total)
    p = matched / read
    fpc = (total - read) / (total - 1) if total > 1 else 0.0
    se = total * math.sqrt(max(p * (1 - p), 0.0) / read * fpc)
    n_eff = read / fpc if fpc > 0 else float("inf")
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n_eff)) / (1 + z2 / n_eff)
    half = Z95 * math.sqrt(p * (1 - p) / n_eff + z2 / (4 * n_eff * n_eff)) / (1 + z2 / n_eff)
    # Profiles already seen to match (or not) are known; only the unread part is estimated.
    low = max(matched, math.floor((centre - half) * total))
    high = min(total - (read - matched), math.ceil((centre + half) * total))
    return Estimate(round(total * p), se, low, high, matched, read, total)


@dataclass
class ChunkResult:
    index: int
    output_path: Path  # Parquet (audience_id, profile_id): the qualified pairs of this chunk
    counts: dict[str, int]
    profiles: int
    seconds: float


def evaluate_chunks(
    sample: Sample,
    definitions: list[engine.EngineDefinition],
    schema: Schema,
    evaluation_time: datetime,
    work: Path,
    *,
    engine_name: str = "duckdb",
    external_members: dict[str, Path] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_chunk: Callable[[ChunkResult], None] | None = None,
    memory_limit: str = "2GB",
) -> list[ChunkResult]:
    """Evaluate ``definitions`` on each chunk of ``sample`` in order, with the segment jobs' engine (the same
    compiled plan); ``on_chunk`` sees every chunk's result as soon as it is done."""
    out: list[ChunkResult] = []
    work.mkdir(parents=True, exist_ok=True)
    for chunk_index, chunk in enumerate(sample.chunks):
        if should_cancel is not None and should_cancel():
            raise engine.EvaluationCancelled("evaluation cancelled")
        started = time.perf_counter()
        result = engine.evaluate(
            engine.EvaluationRequest(
                definitions=definitions,
                profiles_path=chunk.profiles_path,
                events_path=chunk.events_path,
                evaluation_time=evaluation_time,
                output_path=work / f"chunk-{chunk_index:03d}.parquet",
                schema=schema,
                engine=engine_name,
                external_members=dict(external_members or {}),
                memory_limit=memory_limit,
                temp_dir=work / "spill",
                should_cancel=should_cancel,
            )
        )
        done = ChunkResult(
            chunk_index,
            Path(result.output_path),
            dict(result.counts),
            int(result.total_profiles),
            time.perf_counter() - started,
        )
        out.append(done)
        if on_chunk is not None:
            on_chunk(done)
    return out
