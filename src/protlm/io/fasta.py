"""Streaming FASTA reader and writer.

Handles single- and multi-line records, gzip (detected by magic bytes, not by name), Windows
line endings and a final record without a trailing newline. Yields raw records; validation is
done once, for every format, by `protlm.io.records.validated`.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from protlm.errors import InputError
from protlm.io.records import RawRecord, SeqRecord

GZIP_MAGIC = b"\x1f\x8b"


def open_text(path: str | Path) -> TextIO:
    """Open a text file, transparently decompressing gzip; universal newlines."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(2)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, expected a file") from None
    if magic == GZIP_MAGIC:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="strict", newline=None)
    return open(path, encoding="utf-8", errors="strict", newline=None)


@contextmanager
def read_errors(path: str | Path, line: Callable[[], int | None]):
    """Turn what a damaged text file raises while it is read into one `InputError` naming the file and
    the line reached: bytes that are not UTF-8, a gzip stream cut short or corrupt, an overlong CSV field."""
    try:
        yield
    except UnicodeDecodeError as e:
        raise InputError(path, f"not UTF-8 text ({e.reason})", line=line()) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise InputError(path, f"truncated or corrupt gzip data ({e or type(e).__name__})", line=line()) from None
    except csv.Error as e:
        raise InputError(path, f"malformed table ({e})", line=line()) from None


def iter_fasta(path: str | Path) -> Iterator[RawRecord]:
    """Yield raw FASTA records; header line numbers are 1-based.

    The id is the header's first word; the rest is the description.
    """
    header: str | None = None
    header_line = 0
    chunks: list[str] = []
    lineno = 0
    with open_text(path) as fh, read_errors(path, lambda: lineno + 1):
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\n").rstrip("\r").strip()
            if line.startswith(">"):
                if header is not None:
                    yield _raw(path, header, header_line, chunks)
                header, header_line, chunks = line[1:].strip(), lineno, []
            elif not line or line.startswith(";"):
                continue  # blank lines and old-style comments
            elif header is None:
                raise InputError(path, "sequence data before the first '>' header; not a FASTA file?", line=lineno)
            else:
                chunks.append(line)
    if header is not None:  # the last record: the seed code dropped it
        yield _raw(path, header, header_line, chunks)


def _raw(path: str | Path, header: str, line: int, chunks: list[str]) -> RawRecord:
    if not header:
        raise InputError(path, "empty FASTA header '>' (no record id)", line=line)
    rid, _, description = header.partition(" ")
    return RawRecord(id=rid, seq="".join(chunks).replace(" ", ""), line=line, description=description.strip())


def write_fasta(records: Iterable[SeqRecord], path: str | Path, width: int = 60) -> int:
    """Write records as FASTA (gzip if `path` ends in .gz), `width` residues per line. Returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    n = 0
    with opener(path, "wt", encoding="utf-8", newline="\n") as fh:
        for rec in records:
            header = f"{rec.id} {rec.description}".rstrip() if rec.description else rec.id
            fh.write(f">{header}\n")
            for i in range(0, len(rec.seq), width):
                fh.write(rec.seq[i : i + width] + "\n")
            n += 1
    return n
