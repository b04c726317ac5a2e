"""The engines' output file: every qualified ``(audience_id, profile_id)`` pair, streamed to one Parquet file.

Written for speed, as it is read once (by the membership diff) and then deleted: ``profile_id`` without a
dictionary (a million distinct ids overflow the dictionary page and fall back anyway), statistics only for
``audience_id`` (the only column filtered on), LZ4. Measured for 20M pairs: 1.05 s, where pyarrow's defaults
took 1.56 s, for a file of the same size (91 vs 96 MB).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PAIRS_SCHEMA = pa.schema([("audience_id", pa.string()), ("profile_id", pa.string())])
# With the request's profile_numbers: the profile's number in the membership diff's profile index instead of its
# id (4 bytes instead of 32 characters to write, read and join).
NUMBERED_SCHEMA = pa.schema([("audience_id", pa.string()), ("pidx", pa.uint32())])
ARROW_BATCH_ROWS = 1_000_000  # rows per Arrow batch read from an engine's query: bounded memory


def pairs_writer(path: str | Path, schema: pa.Schema = PAIRS_SCHEMA) -> pq.ParquetWriter:
    return pq.ParquetWriter(
        path,
        schema,
        use_dictionary=["audience_id"],
        write_statistics=["audience_id"],
        compression="lz4",
    )


def pairs_table(audience_id: str, profile_ids: pa.Array, schema: pa.Schema = PAIRS_SCHEMA) -> pa.Table:
    """The pairs of one audience: ``audience_id`` repeated beside its members' ``profile_ids`` (or numbers)."""
    audience = pa.repeat(pa.scalar(audience_id, pa.string()), len(profile_ids))
    return pa.table([audience, profile_ids.cast(schema.field(1).type)], schema=schema)
