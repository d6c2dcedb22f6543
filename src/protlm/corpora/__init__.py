"""Corpora: named sources of protein sequences.

A corpus spec is either a file (FASTA, TSV/CSV, Parquet; see `protlm.io`) or `scl2205[:SPLIT]`.
The default pre-training corpus is `scl2205` = SCL2205 train+eval; its heldout split is never
used for pre-training so that downstream localization results stay honest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from protlm.corpora.scl2205 import SCL2205, SCLEntry, load_scl2205
from protlm.errors import InputError
from protlm.io import RawRecord, ResiduePolicy, SeqRecord, SkipReport, read_sequences, validated

DEFAULT_CORPUS = "scl2205"
DEFAULT_SCL_SPLIT = "train+eval"


@dataclass(frozen=True)
class Corpus:
    """A sequence source. `records()` streams validated records and fills `report`."""

    spec: str
    id_col: str = "id"
    seq_col: str = "sequence"

    @property
    def is_builtin(self) -> bool:
        return self.spec == "scl2205" or self.spec.startswith("scl2205:")

    def records(self, policy: ResiduePolicy = ResiduePolicy(), report: SkipReport | None = None) -> Iterator[SeqRecord]:
        if self.is_builtin:
            _, _, split = self.spec.partition(":")
            entries = load_scl2205().split(split or DEFAULT_SCL_SPLIT)
            # line = row of the package's scl2205.csv (header is line 1), so messages point at real data.
            raw = (RawRecord(e.id, e.seq, line=e.index + 2, description=e.label_name) for e in entries)
            return validated(raw, f"{self.spec} (scldata/data/scl2205.csv)", policy, report)
        if not Path(self.spec).exists():
            raise InputError(self.spec, "file not found (a corpus is a FASTA/TSV/CSV/Parquet file or scl2205[:split])")
        return read_sequences(self.spec, policy, report, id_col=self.id_col, seq_col=self.seq_col)

    def sequences(self, policy: ResiduePolicy = ResiduePolicy(), report: SkipReport | None = None) -> Iterator[str]:
        return (r.seq for r in self.records(policy, report))


def open_corpus(spec: str = DEFAULT_CORPUS, id_col: str = "id", seq_col: str = "sequence") -> Corpus:
    """Resolve a corpus spec (file path or `scl2205[:split]`)."""
    return Corpus(spec, id_col=id_col, seq_col=seq_col)


__all__ = ["DEFAULT_CORPUS", "SCL2205", "Corpus", "SCLEntry", "load_scl2205", "open_corpus"]
