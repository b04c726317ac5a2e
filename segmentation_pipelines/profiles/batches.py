"""Dataset batches as the store builds read them: :class:`BatchRef` values and DuckDB relations over their files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from segmentation_pipelines.duck import sql_list
from segmentation_pipelines.profiles.layout import StoreLayout
from segmentation_pipelines.profiles.schema import Tree


@dataclass(frozen=True)
class BatchRef:
    """A complete batch of a dataset: where its files are and when it was ingested."""

    dataset_id: str
    batch_id: str
    ingested_ms: int
    columns: Mapping[str, Tree] | None = None
    rows: int = 0


def batch_files(layout: StoreLayout, batches: list[BatchRef]) -> list[tuple[str, BatchRef, int]]:
    """Every file of ``batches`` in batch order (ingestion time, then id): the order merge ties are broken by."""
    out = []
    for order, b in enumerate(sorted(batches, key=lambda b: (b.ingested_ms, b.batch_id))):
        out.extend((str(f), b, order) for f in layout.batch_files(b.dataset_id, b.batch_id))
    return out


def batch_relation(con, name: str, files: list[tuple[str, BatchRef, int]]) -> str | None:
    """A view ``name`` over every file with ``_dataset``, ``_batch``, ``_ingested`` and ``_seq`` columns
    (``_seq`` = file position in ``files`` and row number: the same for a file whatever else is read)."""
    if not files:
        return None
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name}_files (filename VARCHAR, d VARCHAR, b VARCHAR, t BIGINT, o BIGINT)"
    )
    con.executemany(
        f"INSERT INTO {name}_files VALUES (?, ?, ?, ?, ?)",
        [(f, b.dataset_id, b.batch_id, b.ingested_ms, i) for i, (f, b, _o) in enumerate(files)],
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW {name} AS
        SELECT r.* EXCLUDE (filename, file_row_number), m.d AS _dataset, m.b AS _batch,
               make_timestamp(m.t * 1000) AS _ingested, m.o * 4294967296 + r.file_row_number AS _seq
        FROM read_parquet({sql_list(f for f, _, _ in files)}, union_by_name=true, filename=true,
                          file_row_number=true) r
        JOIN {name}_files m ON m.filename = r.filename"""
    )
    return name


def plain_relation(con, name: str, files: list[str]) -> str | None:
    """A view ``name`` over the files' own columns only (no per-row batch metadata: cheaper to scan)."""
    if not files:
        return None
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM read_parquet({sql_list(files)}, union_by_name=true)"
    )
    return name
