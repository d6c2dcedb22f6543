"""Generic pair source: a TSV/CSV of id pairs (optional `label`) plus a sequence file.

Example: `../shared/data/ppi_positive_pairs.tsv.gz` (curated human interactions, positives only)
with `../shared/data/swissprot2014.fasta.gz`. Pairs naming an id without a sequence, self-pairs and
duplicate unordered pairs are skipped and counted, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from protlm.errors import InputError
from protlm.io import ResiduePolicy, SkipReport, iter_table_rows, read_sequences
from protlm.io.validate import check_id
from protlm.pairs.table import Pair


def load_sequences(
    path: str | Path,
    wanted: set[str] | None = None,
    policy: ResiduePolicy = ResiduePolicy(),
    report: SkipReport | None = None,
) -> dict[str, str]:
    """id -> sequence from FASTA/TSV/Parquet, keeping only `wanted` ids when given; a file without a usable
    record is an error."""
    out = {}
    report = report if report is not None else SkipReport(str(path))
    for rec in read_sequences(path, policy, report):
        if wanted is None or rec.id in wanted:
            out[rec.id] = rec.seq
    report.require_used()
    return out


def read_id_pairs(
    pairs_path: str | Path,
    sequences_path: str | Path,
    policy: ResiduePolicy = ResiduePolicy(),
    report: SkipReport | None = None,
    id_a: str = "id_a",
    id_b: str = "id_b",
    label_col: str | None = None,
    seq_report: SkipReport | None = None,
) -> Iterator[Pair]:
    """Pairs (split 'train' until a splitter assigns one) with sequences looked up by id; `seq_report` counts
    the sequence file's records."""
    report = report if report is not None else SkipReport(str(pairs_path))
    columns = [id_a, id_b] + ([label_col] if label_col else [])
    rows = []
    for line, row in iter_table_rows(pairs_path, columns):
        check_id(row[id_a], pairs_path, line)
        check_id(row[id_b], pairs_path, line)
        rows.append((line, row))
    wanted = {r[c] for _, r in rows for c in (id_a, id_b)}
    seqs = load_sequences(sequences_path, wanted, policy, seq_report)
    seen: set[tuple[str, str]] = set()
    for line, row in rows:
        report.n_read += 1
        a, b = row[id_a], row[id_b]
        label = 1
        if label_col:
            if row[label_col] not in ("0", "1"):
                raise InputError(
                    pairs_path, f"label must be 0 or 1, found {row[label_col]!r}", line=line, record=f"{a}|{b}"
                )
            label = int(row[label_col])
        key = (min(a, b), max(a, b))
        if a not in seqs or b not in seqs:
            report.skip(f"id without a sequence in {Path(sequences_path).name}", f"{a}|{b}", line)
        elif a == b:
            report.skip("self-pair", f"{a}|{b}", line)
        elif key in seen:
            report.skip("duplicate pair", f"{a}|{b}", line)
        else:
            seen.add(key)
            report.n_used += 1
            yield Pair(key[0], key[1], seqs[key[0]], seqs[key[1]], label)
