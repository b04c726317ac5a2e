"""Export to a PostgreSQL table (an extension): load a written export into a new table, then swap it in.

The rows arrive as the CSV the export writer produces (nested values as JSON text) and are streamed with
PostgreSQL's ``COPY ... FROM STDIN`` into ``<table>__load_<token>``; one transaction then drops the previous
table and renames the new one into place, so a reader sees the old export or the new one, never a mix, and a
failure leaves the previous export as it was.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from sqlalchemy import create_engine

TYPES = {
    "VARCHAR": "text",
    "BIGINT": "bigint",
    "INTEGER": "bigint",
    "DOUBLE": "double precision",
    "FLOAT": "double precision",
    "BOOLEAN": "boolean",
    "TIMESTAMP": "timestamp",
    "DATE": "date",
}
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,50}$")


def valid_name(name: str) -> bool:
    return bool(NAME.match(name))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def replace_table(url: str, schema: str, table: str, columns: list[tuple[str, str]], csv_path: Path) -> int:
    """Load ``csv_path`` (with a header) into ``schema.table``, replacing the table atomically; the row count."""
    engine = create_engine(url)
    loading = f"{table}__load_{secrets.token_hex(4)}"
    target, staged = f"{_quote(schema)}.{_quote(table)}", f"{_quote(schema)}.{_quote(loading)}"
    try:
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(f"CREATE TABLE {staged} ({', '.join(f'{_quote(c)} {t}' for c, t in columns)})")
            with open(csv_path) as f:
                cur.copy_expert(f"COPY {staged} FROM STDIN WITH (FORMAT csv, HEADER true)", f)
            cur.execute(f"SELECT count(*) FROM {staged}")
            (rows,) = cur.fetchone()
            cur.execute(f"DROP TABLE IF EXISTS {target}")
            cur.execute(f"ALTER TABLE {staged} RENAME TO {_quote(table)}")
            raw.commit()  # one transaction: the load, the drop and the rename
            return int(rows)
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()
    finally:
        engine.dispose()
