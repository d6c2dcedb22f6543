"""Streaming readers for TSV/CSV (optionally gzipped) and Parquet files with named columns."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from protlm.errors import InputError
from protlm.io.fasta import open_text, read_errors
from protlm.io.records import RawRecord


def table_kind(path: str | Path) -> str:
    """'parquet', 'tsv' or 'csv' from the file name (a trailing .gz is ignored)."""
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith(".parquet") or name.endswith(".pq"):
        return "parquet"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".tsv", ".tab", ".txt")):
        return "tsv"
    raise InputError(path, "unknown table format; expected .tsv, .csv or .parquet (optionally .gz)")


def table_header(path: str | Path) -> list[str]:
    """Column names of a table (stripped), read without loading the rows."""
    if table_kind(path) == "parquet":
        import pyarrow.parquet as pq

        try:
            return [str(n).strip() for n in pq.ParquetFile(path).schema_arrow.names]
        except Exception as e:  # noqa: BLE001 - any pyarrow failure means "not readable Parquet"
            raise InputError(path, f"not a readable Parquet file ({e})") from None
    with open_text(path) as fh, read_errors(path, lambda: 1):
        first = fh.readline().rstrip("\r\n")
    return [h.strip() for h in first.split("\t" if table_kind(path) == "tsv" else ",")]


def iter_table_rows(path: str | Path, columns: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line, row) with the requested columns as strings; line is 1-based (header = line 1).

    For Parquet the "line" is the 1-based row number plus one, so messages read the same.
    """
    kind = table_kind(path)
    if kind == "parquet":
        yield from _iter_parquet(path, columns)
        return
    with open_text(path) as fh:
        reader = csv.reader(fh, delimiter="\t" if kind == "tsv" else ",")
        with read_errors(path, lambda: reader.line_num + 1):
            header = next(reader, None)
        if header is None:
            raise InputError(path, "empty file, expected a header row")
        index = _column_index(path, header, columns)
        with read_errors(path, lambda: reader.line_num + 1):
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise InputError(path, f"expected {len(header)} fields, found {len(row)}", line=line)
                yield line, {c: row[i].strip() for c, i in index.items()}


def _column_index(path: str | Path, header: list[str], columns: list[str]) -> dict[str, int]:
    header = [h.strip() for h in header]
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}; the file has: {', '.join(header)}", line=1)
    return {c: header.index(c) for c in columns}


def _iter_parquet(path: str | Path, columns: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except Exception as e:  # pyarrow raises ArrowInvalid etc. for non-Parquet input
        raise InputError(path, f"not a readable Parquet file ({e})") from None
    _column_index(path, pf.schema_arrow.names, columns)
    row = 1
    for batch in pf.iter_batches(columns=columns, batch_size=8192):
        cols = [batch.column(c).to_pylist() for c in columns]
        for values in zip(*cols, strict=True):
            row += 1
            yield row, {c: "" if v is None else str(v) for c, v in zip(columns, values, strict=True)}


def iter_table(path: str | Path, id_col: str = "id", seq_col: str = "sequence") -> Iterator[RawRecord]:
    """Yield raw sequence records from the named id and sequence columns."""
    for line, row in iter_table_rows(path, [id_col, seq_col]):
        yield RawRecord(id=row[id_col], seq=row[seq_col], line=line)
