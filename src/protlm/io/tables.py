"""Streaming readers for TSV/CSV (optionally gzipped) and Parquet files with named columns.

Memory stays bounded whatever one line holds: text is read a line at a time, at most `MAX_LINE`
characters (a longer line, or a row of quoted fields spanning lines, is an error naming it), and a
field longer than csv's 131,072 characters is refused by the csv module. Parquet pages are checked
before they are decompressed (`protlm.io.parquet_pages`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from protlm.errors import InputError
from protlm.io.fasta import MAX_RECORD, open_text, read_errors
from protlm.io.parquet_pages import check_pages
from protlm.io.records import RawRecord

MAX_LINE = 1 << 23  # 8,388,608 characters in one table line or row: 64 fields at csv's limit of 131,072


def bounded_lines(fh: TextIO, path: str | Path, limit: int | None = None) -> Iterator[str]:
    """The lines of a text file (line endings kept), each read with a bounded `readline`: a line of over
    `limit` characters (default `MAX_LINE`) is an `InputError` naming it, raised once `limit` + 1 characters
    are read, never more."""
    limit = MAX_LINE if limit is None else limit
    lineno = 0
    while text := fh.readline(limit + 1):
        lineno += 1
        if len(text) > limit and not text.endswith("\n"):
            raise InputError(path, f"a line of over {limit:,} characters", line=lineno)
        yield text


class _RowLines:
    """Lines for `csv.reader`: each bounded (`bounded_lines`), and the lines of one row together (a quoted
    field may span lines) at most `MAX_LINE` characters; `row_done()` starts the next row's count."""

    def __init__(self, fh: TextIO, path: str | Path):
        self.lines, self.path, self.line, self.row = bounded_lines(fh, path), path, 0, 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        text = next(self.lines)
        self.line += 1
        self.row += len(text)
        if self.row > MAX_LINE + 1:
            raise InputError(self.path, f"a row of over {MAX_LINE:,} characters (quoted fields over lines)",
                             line=self.line)  # fmt: skip
        return text

    def row_done(self) -> None:
        self.row = 0


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
        first = next(bounded_lines(fh, path), "").rstrip("\r\n")
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
        rows = csv_rows(fh, path, "\t" if kind == "tsv" else ",")
        _, header = next(rows, (1, None))
        if header is None:
            raise InputError(path, "empty file, expected a header row")
        index = _column_index(path, header, columns)
        for line, row in rows:
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise InputError(path, f"expected {len(header)} fields, found {len(row)}", line=line)
            yield line, {c: row[i].strip() for c, i in index.items()}


def csv_rows(fh: TextIO, path: str | Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) of each row of a delimited text file, in bounded memory (`MAX_LINE`); a damaged file
    is one `InputError` naming the line (see `read_errors`)."""
    lines = _RowLines(fh, path)
    reader = csv.reader(lines, delimiter=delimiter)
    with read_errors(path, lambda: reader.line_num + 1):
        for row in reader:
            lines.row_done()
            yield reader.line_num, row


def _column_index(path: str | Path, header: list[str], columns: list[str]) -> dict[str, int]:
    header = [h.strip() for h in header]
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}; the file has: {', '.join(header)}", line=1)
    return {c: header.index(c) for c in columns}


BATCH_BYTES = 32 << 20  # Parquet rows are decoded about this many bytes at a time, at most


def _iter_parquet(path: str | Path, columns: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a Parquet file in bounded memory: each row group is read in batches sized from its bytes per
    row and from its longest dictionary value (a small file of one long string repeated stays small)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except Exception as e:  # pyarrow raises ArrowInvalid etc. for non-Parquet input
        raise InputError(path, f"not a readable Parquet file ({e})") from None
    _column_index(path, pf.schema_arrow.names, columns)
    check_pages(path, pf, columns)
    row = 1
    try:
        for g in range(pf.metadata.num_row_groups):
            size = _rows_per_batch(path, pf, g, columns)
            for batch in pf.iter_batches(batch_size=size, row_groups=[g], columns=columns):
                _check_lengths(path, batch, columns, row)
                cols = [batch.column(c).to_pylist() for c in columns]
                for values in zip(*cols, strict=True):
                    row += 1
                    yield row, {c: "" if v is None else str(v) for c, v in zip(columns, values, strict=True)}
    except (OSError, pa.ArrowException) as e:  # a damaged page or column chunk
        raise InputError(path, f"unreadable Parquet data ({str(e)[:200]})", line=row + 1) from None


def _check_lengths(path, batch, columns: list[str], row: int) -> None:
    """Refuse a text value over `MAX_RECORD` characters, as FASTA refuses such a record (`row`: the line of
    the row before the batch)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for c in columns:
        col = batch.column(c)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        lengths = pc.utf8_length(col)
        if (pc.max(lengths).as_py() or 0) > MAX_RECORD:
            k = pc.index(pc.greater(lengths, MAX_RECORD), True).as_py()
            raise InputError(path, f"a value of over {MAX_RECORD:,} characters in column {c!r}: not a protein",
                             line=row + 1 + k)  # fmt: skip


def _rows_per_batch(path, pf, g: int, columns: list[str]) -> int:
    """Rows per batch of row group `g`: `BATCH_BYTES` over the larger of its uncompressed bytes per row and
    its longest dictionary values (read from the dictionary pages alone: one row decoded as a dictionary)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rg = pf.metadata.row_group(g)
    chunks = {rg.column(i).path_in_schema: rg.column(i) for i in range(rg.num_columns)}
    per_row = sum(chunks[c].total_uncompressed_size for c in columns if c in chunks) / max(1, rg.num_rows)
    coded = [c for c in columns if c in chunks and chunks[c].has_dictionary_page]
    longest = 0
    if coded:
        peek = pq.ParquetFile(path, read_dictionary=coded)
        first = next(peek.iter_batches(batch_size=1, row_groups=[g], columns=coded), None)
        for c in coded if first is not None else ():
            col = first.column(c)
            if hasattr(col, "dictionary") and len(col.dictionary):
                longest += int(pc.max(pc.binary_length(col.dictionary)).as_py() or 0)
    return int(min(8192, max(1, BATCH_BYTES // max(per_row, longest, 1))))


def iter_table(path: str | Path, id_col: str = "id", seq_col: str = "sequence") -> Iterator[RawRecord]:
    """Yield raw sequence records from the named id and sequence columns."""
    for line, row in iter_table_rows(path, [id_col, seq_col]):
        yield RawRecord(id=row[id_col], seq=row[seq_col], line=line)
