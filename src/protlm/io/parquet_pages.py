"""Parquet page sizes, read from the page headers before pyarrow decompresses anything.

A Parquet file of a few kilobytes can hold a value of gigabytes (one long string, compressed or
dictionary-encoded), and pyarrow allocates a page's full uncompressed size the moment it reads it.
So the readers first walk the page headers of each column chunk they will read (the chunk's byte
range comes from the footer: `dictionary_page_offset` or `data_page_offset`, `total_compressed_size`)
and refuse a page over `MAX_PAGE` bytes uncompressed, naming the file, row group and column.

Page headers are Thrift structs in the compact protocol; `PageHeader` starts with field 1 `type`,
field 2 `uncompressed_page_size` and field 3 `compressed_page_size` (all i32). The parser below reads
those and skips every other field, whatever its type, so that it knows where the page data begins.

Writers keep pages small. pyarrow and pandas close a data page once it passes 1 MiB, checked every
1,024 values (3,000 titin-long sequences of 35,000 residues: 36 MB pages); DuckDB (`COPY ... TO`)
writes a row group's column as one page until it passes 100,000,000 bytes (then up to 100 MB plus
one value). So `MAX_PAGE` is twice FASTA's length limit, 128 MiB: it holds DuckDB's 100 MB page plus
a 34M-residue value (titin has 34,350), and a crafted page just below it costs under 800 MB to read
and refuse (a value over FASTA's limit is refused once read, as FASTA refuses it).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from protlm.errors import InputError
from protlm.io.fasta import MAX_RECORD

MAX_PAGE = 2 * MAX_RECORD  # 134,217,728 bytes uncompressed
MAX_PAGE_HEADER = 16 << 20  # Arrow's own limit on one page header's size


def check_pages(path: str | Path, pf, columns: list[str], limit: int = MAX_PAGE) -> None:
    """Refuse (`InputError`) a page of the columns `columns` of `pf` (a `pyarrow.parquet.ParquetFile` of
    `path`) that is over `limit` bytes uncompressed, or a page header that cannot be read."""
    meta = pf.metadata
    wanted = set(columns)
    with open(path, "rb") as fh:
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            for i in range(rg.num_columns):
                chunk = rg.column(i)
                name = chunk.path_in_schema
                if name.split(".")[0] not in wanted:
                    continue
                largest = _largest_page(fh, chunk, path, f"row group {g}, column {name!r}")
                if largest > limit:
                    raise InputError(path, f"row group {g}, column {name!r}: a page of {largest:,} bytes "
                                     f"uncompressed, over the {limit:,} allowed (a value too long for a protein?)")  # fmt: skip


def _largest_page(fh: BinaryIO, chunk, path, where: str) -> int:
    """The largest uncompressed page size of one column chunk, walking its page headers (the byte range
    pyarrow reads: from the dictionary page, when there is one before the data, for total_compressed_size)."""
    pos = chunk.data_page_offset
    if chunk.has_dictionary_page and 0 < (chunk.dictionary_page_offset or 0) < pos:
        pos = chunk.dictionary_page_offset
    end = pos + chunk.total_compressed_size
    largest = 0
    while pos < end:
        fields, size = _page_header(fh, pos, path, where)
        uncompressed, compressed = fields.get(2), fields.get(3)
        if uncompressed is None or compressed is None or uncompressed < 0 or compressed < 0:
            raise InputError(path, f"unreadable Parquet data ({where}: a page header without its sizes)")
        largest = max(largest, uncompressed)
        pos += size + compressed
    return largest


def _page_header(fh: BinaryIO, pos: int, path, where: str) -> tuple[dict[int, int], int]:
    """(i32 fields of the page header at `pos`, its length in bytes), read in growing windows."""
    n = 1 << 12
    while True:
        fh.seek(pos)
        buf = fh.read(n)
        reader = _Compact(buf)
        try:
            return reader.struct(), reader.pos
        except _Short:
            if len(buf) < n:
                raise InputError(path, f"unreadable Parquet data ({where}: a page header cut short)") from None
            if n >= MAX_PAGE_HEADER:
                raise InputError(path, f"unreadable Parquet data ({where}: a page header over {n:,} bytes)") from None
            n *= 4
        except ValueError as e:
            raise InputError(path, f"unreadable Parquet data ({where}: {e})") from None


class _Short(Exception):
    """The buffer ended inside the struct: read more."""


class _Compact:
    """Just enough of Thrift's compact protocol to read a struct's i32 fields and skip the rest."""

    def __init__(self, buf: bytes):
        self.buf, self.pos = buf, 0

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise _Short
        self.pos += 1
        return self.buf[self.pos - 1]

    def advance(self, n: int) -> None:
        self.pos += n
        if self.pos > len(self.buf):
            raise _Short

    def varint(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise ValueError("a varint over 64 bits")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def struct(self, depth: int = 0) -> dict[int, int]:
        """Read a struct up to its stop byte; its i32 fields by id (nested structs' are skipped)."""
        if depth > 32:
            raise ValueError("structs nested too deep")
        fields: dict[int, int] = {}
        last = 0
        while True:
            head = self.byte()
            kind = head & 0x0F
            if kind == 0:  # STOP
                return fields
            last = last + (head >> 4) if head >> 4 else self.zigzag()
            if kind == 5:  # i32
                fields[last] = self.zigzag()
            else:
                self.skip(kind, depth)

    def skip(self, kind: int, depth: int, in_list: bool = False) -> None:
        if depth > 32:
            raise ValueError("values nested too deep")
        if kind in (1, 2):  # bool: in a struct the value is the type; in a list, one byte
            if in_list:
                self.advance(1)
        elif kind == 3:  # byte
            self.advance(1)
        elif kind in (4, 5, 6):  # i16, i32, i64
            self.varint()
        elif kind == 7:  # double
            self.advance(8)
        elif kind == 8:  # binary
            self.advance(self.varint())
        elif kind in (9, 10):  # list, set
            head = self.byte()
            n = head >> 4 if head >> 4 != 15 else self.varint()
            for _ in range(n):
                self.skip(head & 0x0F, depth + 1, in_list=True)
        elif kind == 11:  # map
            n = self.varint()
            types = self.byte() if n else 0
            for _ in range(n):
                self.skip(types >> 4, depth + 1, in_list=True)
                self.skip(types & 0x0F, depth + 1, in_list=True)
        elif kind == 12:  # struct
            self.struct(depth + 1)
        else:
            raise ValueError(f"unknown Thrift type {kind}")
