"""Sequence I/O: streaming readers (FASTA, TSV/CSV, Parquet), one validation policy, skip reports.

>>> from protlm.io import read_sequences, SkipReport
>>> report = SkipReport("proteins.fa")
>>> records = list(read_sequences("proteins.fa", report=report))  # doctest: +SKIP
>>> print(report.summary())  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from protlm.io.fasta import iter_fasta, open_text, write_fasta
from protlm.io.records import RawRecord, SeqRecord, validated
from protlm.io.tables import iter_table, iter_table_rows, table_kind
from protlm.io.validate import ALPHABET, RARE, STANDARD, ResiduePolicy, SkipReport, looks_nucleotide

FASTA_SUFFIXES = (".fa", ".fasta", ".faa", ".fas", ".fna", ".seq")


def is_fasta(path: str | Path) -> bool:
    return Path(path).name.lower().removesuffix(".gz").endswith(FASTA_SUFFIXES)


def read_sequences(
    path: str | Path,
    policy: ResiduePolicy = ResiduePolicy(),
    report: SkipReport | None = None,
    id_col: str = "id",
    seq_col: str = "sequence",
) -> Iterator[SeqRecord]:
    """Stream validated records from a FASTA, TSV/CSV or Parquet file (format from the name)."""
    raw = iter_fasta(path, policy.keep()) if is_fasta(path) else iter_table(path, id_col=id_col, seq_col=seq_col)
    return validated(raw, path, policy, report)


__all__ = [
    "ALPHABET",
    "RARE",
    "STANDARD",
    "RawRecord",
    "ResiduePolicy",
    "SeqRecord",
    "SkipReport",
    "is_fasta",
    "iter_fasta",
    "iter_table",
    "iter_table_rows",
    "looks_nucleotide",
    "open_text",
    "read_sequences",
    "table_kind",
    "validated",
    "write_fasta",
]
