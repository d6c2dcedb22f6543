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


LINE_PIECE = 1 << 20  # lines are read in pieces of at most this many characters
MAX_HEADER = LINE_PIECE
MAX_RECORD = 1 << 26  # 67,108,864 residues: no protein or assembly comes near (titin: 34,350)


def iter_fasta(path: str | Path, keep: int | None = None) -> Iterator[RawRecord]:
    """Yield raw FASTA records; header line numbers are 1-based.

    The id is the header's first word; the rest is the description. Memory stays bounded whatever the
    file holds: lines are read in pieces, and a record keeps at most `keep` characters (callers that skip
    sequences over a length pass that length + 1: the rest is read past, never stored). A record over
    `MAX_RECORD` characters, or a header over `MAX_HEADER`, is an error.
    """
    keep = MAX_RECORD + 1 if keep is None else min(keep, MAX_RECORD + 1)
    header: str | None = None
    header_line = kept = 0
    chunks: list[str] = []
    lineno = 0
    with open_text(path) as fh, read_errors(path, lambda: lineno + 1):
        sequence_line = False
        for lineno, piece, first in _lines(fh, path):
            line = piece.strip()
            if not first:  # the rest of a long line: sequence, or a comment's (a header must fit one piece)
                if not sequence_line:
                    continue
            elif line.startswith(">"):
                if header is not None:
                    yield _raw(path, header, header_line, chunks, kept > keep)
                header, header_line, chunks, kept, sequence_line = line[1:].strip(), lineno, [], 0, False
                continue
            elif not line or line.startswith(";"):
                sequence_line = False
                continue  # blank lines and old-style comments
            elif header is None:
                raise InputError(path, "sequence data before the first '>' header; not a FASTA file?", line=lineno)
            sequence_line = True
            line = line.replace(" ", "")
            if kept < keep:
                chunks.append(line[: keep - kept])
            kept += len(line)
            if kept > MAX_RECORD and keep > MAX_RECORD:
                raise InputError(path, f"a record of over {MAX_RECORD:,} characters: not a protein",
                                 line=header_line, record=header.partition(" ")[0])  # fmt: skip
    if header is not None:  # the last record: the seed code dropped it
        yield _raw(path, header, header_line, chunks, kept > keep)


def _lines(fh: TextIO, path) -> Iterator[tuple[int, str, bool]]:
    """(line number, text without its line ending, first piece of its line?); a line longer than
    `LINE_PIECE` comes as several pieces of one number. A header must fit in one piece."""
    lineno, first = 0, True
    while piece := fh.readline(LINE_PIECE):
        lineno += first
        ends = piece.endswith("\n")
        if first and not ends and len(piece) == LINE_PIECE and piece.startswith(">"):
            raise InputError(path, f"a header line of over {MAX_HEADER:,} characters", line=lineno)
        yield lineno, piece.rstrip("\n").rstrip("\r"), first
        first = ends


def _raw(path: str | Path, header: str, line: int, chunks: list[str], truncated: bool) -> RawRecord:
    if not header:
        raise InputError(path, "empty FASTA header '>' (no record id)", line=line)
    rid, _, description = header.partition(" ")
    return RawRecord(id=rid, seq="".join(chunks), line=line, description=description.strip(), truncated=truncated)


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
