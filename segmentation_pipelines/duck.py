"""DuckDB connections, in one place: in memory, bounded memory, spilling to disk, UTC; and SQL literals."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

DEFAULT_MEMORY_LIMIT = os.environ.get("SEGMENTATION_DUCKDB_MEMORY", "4GB")


def connect(
    temp_dir: Path | None = None, memory_limit: str = DEFAULT_MEMORY_LIMIT, threads: int | None = None
):
    con = duckdb.connect()
    con.execute(f"SET memory_limit='{memory_limit}'")
    con.execute("SET TimeZone='UTC'")
    con.execute("SET preserve_insertion_order=false")
    if threads:
        con.execute(f"SET threads={int(threads)}")
    if temp_dir is not None:
        Path(temp_dir).mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory='{temp_dir}'")
    return con


def sql_str(value: str) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_list(paths) -> str:
    return "[" + ", ".join(sql_str(str(p)) for p in paths) + "]"


def parquet_exists(path) -> bool:
    """Whether ``path`` (a file, or a glob such as the store's ``current/*.parquet``) names at least one file."""
    p = str(path)
    if any(c in p for c in "*?["):
        import glob

        return bool(glob.glob(p))
    return Path(p).exists()
