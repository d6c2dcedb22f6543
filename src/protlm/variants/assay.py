"""A deep mutational scan in ProteinGym's substitution layout, read and checked; the scored table written.

Columns: `mutant` (`A23C:G45T`, 1-based), `mutated_sequence`, optionally `DMS_score` (higher = fitter) and
`DMS_score_bin` (1 = fit); any others are carried through. CSV, TSV or Parquet (`io/tables.py`).
The wild type is given (`--wt`), or recovered from the first row's `mutated_sequence` with its mutations
undone; every row must then agree with it. Any disagreement is one `InputError` naming the file, the line
and the mutant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protlm.errors import InputError, ProtlmError
from protlm.io.tables import iter_table_rows, table_header, table_kind
from protlm.io.validate import ResiduePolicy
from protlm.variants.mutants import Variant, apply, parse_mutant, undo

MUTANT, SEQUENCE, SCORE, BIN = "mutant", "mutated_sequence", "DMS_score", "DMS_score_bin"
OUTPUT = "score"


@dataclass
class Assay:
    """The rows of one assay: every column as read (text), the parsed variants, labels when present."""

    path: str
    wt: str
    columns: list[str]
    rows: list[list[str]]
    variants: list[Variant]
    dms_score: np.ndarray | None = None  # (n,) float
    dms_bin: np.ndarray | None = None  # (n,) int 0/1


def clean_wt(seq: str, where: str) -> str:
    """A sequence under the residue policy (upper case; rare letters as X); ProtlmError naming `where`."""
    try:
        wt = ResiduePolicy().clean(seq.strip())
    except ValueError as e:
        raise ProtlmError(f"{where}: {e}") from None
    if not wt:
        raise ProtlmError(f"{where}: an empty sequence")
    return wt


def read_assay(path: str | Path, wt: str | None = None) -> Assay:
    """The checked variants of a DMS file; `wt` (already cleaned) or the wild type recovered from the rows."""
    header = [c for c in dict.fromkeys(table_header(path)) if c]
    required = [MUTANT] if wt is not None and SEQUENCE not in header else [MUTANT, SEQUENCE]
    columns = required + [c for c in header if c not in required]
    rows, variants, lines = [], [], []
    for line, row in iter_table_rows(path, columns):
        variant = _parsed(path, line, row)
        if wt is None:
            wt = _recovered(path, line, row, variant)
        _agrees(path, line, row, variant, wt)
        rows.append([row[c] for c in columns])
        variants.append(variant)
        lines.append(line)
    if not rows:
        raise InputError(path, "no variants (a header and no rows)")
    assay = Assay(str(path), wt, columns, rows, variants)
    if SCORE in columns:
        assay.dms_score = _numbers(path, columns, rows, lines, SCORE)
    if BIN in columns:
        assay.dms_bin = _numbers(path, columns, rows, lines, BIN).astype(np.int64)
        bad = np.flatnonzero(~np.isin(assay.dms_bin, (0, 1)))
        if len(bad):
            k = int(bad[0])
            raise InputError(path, f"{BIN} must be 0 or 1", line=lines[k], record=rows[k][0])
    return assay


def _parsed(path, line: int, row: dict) -> Variant:
    try:
        return parse_mutant(row[MUTANT])
    except ValueError as e:
        raise InputError(path, str(e), line=line, record=row[MUTANT][:60] or None) from None


def _sequence(path, line: int, row: dict) -> str:
    """The row's mutated_sequence under the residue policy."""
    try:
        return ResiduePolicy().clean(row[SEQUENCE].strip())
    except ValueError as e:
        raise InputError(path, f"mutated_sequence: {e}", line=line, record=row[MUTANT]) from None


def _recovered(path, line: int, row: dict, variant: Variant) -> str:
    """The wild type of the first row: its mutated_sequence with the mutations undone."""
    try:
        return undo(variant, _sequence(path, line, row))
    except ValueError as e:
        raise InputError(path, str(e), line=line, record=row[MUTANT]) from None


def _agrees(path, line: int, row: dict, variant: Variant, wt: str) -> None:
    """The row's mutations fit the wild type, and its mutated_sequence (when there is one) is the result."""
    try:
        mutated = apply(variant, wt)
    except ValueError as e:
        raise InputError(path, str(e), line=line, record=row[MUTANT]) from None
    if SEQUENCE not in row:
        return
    given = _sequence(path, line, row)
    if given == mutated:
        return
    if len(given) != len(wt):
        why = (f"an indel: mutated_sequence has {len(given):,} residues, the wild type {len(wt):,} "
               "(substitutions only)")  # fmt: skip
    else:
        k = next(i for i, (a, b) in enumerate(zip(given, mutated, strict=True)) if a != b)
        why = f"mutated_sequence has {given[k]} at position {k + 1}; the wild type with this mutant has {mutated[k]}"
    raise InputError(path, why, line=line, record=row[MUTANT])


def _numbers(path, columns: list[str], rows: list[list[str]], lines: list[int], name: str) -> np.ndarray:
    k = columns.index(name)
    values = np.empty(len(rows))
    for i, row in enumerate(rows):
        try:
            values[i] = float(row[k])
        except ValueError:
            values[i] = math.nan
        if not math.isfinite(values[i]):
            raise InputError(path, f"{name} {row[k][:40]!r} is not a number", line=lines[i], record=row[0])
    return values


def write_scored(assay: Assay, scores: np.ndarray, out: str | Path) -> Path:
    """Every input column (as read) plus `score`, written atomically; CSV, TSV or Parquet by `out`'s name."""
    import pandas as pd

    table = pd.DataFrame(assay.rows, columns=assay.columns)
    table[OUTPUT if OUTPUT not in assay.columns else f"{OUTPUT}_protlm"] = scores
    return write_frame(table, out)


def write_frame(table, out: str | Path) -> Path:
    """A pandas table written atomically as CSV, TSV or Parquet (by the name; .gz compresses text)."""
    from protlm.io.atomic import atomic_open

    out = Path(out)
    kind = table_kind(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "parquet":
        with atomic_open(out, "wb") as fh:
            table.to_parquet(fh, index=False)
        return out
    gz = out.name.lower().endswith(".gz")
    with atomic_open(out, "wb" if gz else "w", **({} if gz else {"newline": "", "encoding": "utf-8"})) as fh:
        table.to_csv(fh, sep="\t" if kind == "tsv" else ",", index=False, compression="gzip" if gz else None)
    return out
