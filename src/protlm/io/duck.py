"""DuckDB for out-of-core table work (the STRING builder, pair stores), locked down.

`connect` opens a database in a work directory that may read only the given files and write only
that directory; the configuration is locked before the first query, so even a missed injection
could not reach other files (SECURITY.md). Values and paths always travel as bound parameters.
`write_parquet` streams a query's result into a Parquet file through pyarrow and renames it into
place, so no output path ever appears in SQL.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from protlm.errors import ProtlmError
from protlm.io.atomic import new_temp_file

_MEMORY = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


def check_memory_limit(value: str) -> str:
    if not _MEMORY.fullmatch(str(value).strip()):
        raise ProtlmError(f"--memory-limit must be a size such as 512MB or 4GB, got {value!r}")
    return str(value).strip()


def connect(work: Path, readable: list[Path], memory_limit: str = "1GB", threads: int | None = None):
    """A DuckDB connection that may read only `readable` and write only under `work`, locked."""
    import duckdb

    config = {"memory_limit": check_memory_limit(memory_limit), "temp_directory": str(work / "spill")}
    config |= {"preserve_insertion_order": "false"} | ({"threads": str(threads)} if threads else {})
    try:
        con = duckdb.connect(str(work / "work.duckdb"), config=config)
    except duckdb.Error as e:
        raise ProtlmError(f"--memory-limit {memory_limit!r}: {str(e).splitlines()[0]}") from None
    con.execute("SET enable_progress_bar = false")
    con.execute("SET allowed_paths = $1", [[str(p) for p in readable]])
    con.execute("SET allowed_directories = $1", [[f"{work}/"]])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def write_parquet(con, query: str, params: dict, path: Path, row_group: int = 100_000) -> int:
    """Stream `query` into Parquet at `path` (written beside it, renamed into place); returns the rows.
    Columns that DuckDB knows hold no nulls are written as not-null."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    reader = con.sql(query, params=params).to_arrow_reader(row_group)
    schema = pa.schema([f.with_nullable(False) for f in reader.schema])
    tmp = new_temp_file(path)
    rows = 0
    with pq.ParquetWriter(tmp, schema) as writer:
        for batch in reader:
            writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema), row_group_size=row_group)
            rows += batch.num_rows
    os.replace(tmp, path)
    return rows
