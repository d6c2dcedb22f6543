"""TCR-epitope binding: (CDR3 beta, epitope) pairs.

Sources:
- TITAN / paccmann directories: `tcr.csv` and `epitopes.csv` (tab-separated `SEQUENCE<TAB>ID`, no
  header) and labelled pair files `*train*.csv`, `*valid*.csv`, `*test*.csv` with the columns
  `,ligand_name,sequence_id,label` (ligand = epitope id, sequence = TCR id). Splits are TITAN's.
- Positives-only tables: a VDJdb TSV export (`Gene`, `CDR3`, `Epitope`; TRB rows are used) or a
  TSV/CSV with `cdr3b` and `epitope` columns. Splits and negatives are made here (see `make_tcr_splits`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from protlm.errors import InputError
from protlm.io import ResiduePolicy, SkipReport, iter_table_rows, open_text
from protlm.io.tables import bounded_lines, csv_rows, table_header
from protlm.tasks.data import Example, stable_unit
from protlm.tasks.readers import BINARY_LABELS, Collector

TITAN_PAIR_COLUMNS = ("ligand_name", "sequence_id", "label")


def _read_titan_sequences(path: Path, policy: ResiduePolicy) -> dict[str, str]:
    if not path.is_file():
        raise InputError(path, "file not found (a TITAN directory holds tcr.csv and epitopes.csv)")
    col = Collector(path, policy)
    out = {}
    with open_text(path) as fh:
        for line, row in csv_rows(fh, path, "\t"):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2:
                raise InputError(path, f"expected 2 tab-separated fields (SEQUENCE, ID), found {len(row)}", line=line)
            seq, name = row[0].strip(), row[1].strip()
            if name in out:
                raise InputError(path, f"duplicate id {name!r}", line=line, record=name)
            out[name] = col.clean(seq, line, name)
    return out


def read_titan(directory: str | Path, policy: ResiduePolicy = ResiduePolicy()) -> tuple[dict, list[SkipReport]]:
    """TITAN directory -> ({split: [Example]}, reports). Example id = `epitope_id|tcr_id`."""
    directory = Path(directory)
    tcrs = _read_titan_sequences(directory / "tcr.csv", policy)
    epitopes = _read_titan_sequences(directory / "epitopes.csv", policy)
    splits: dict[str, list[Example]] = {}
    reports = []
    for path in sorted(directory.glob("*.csv")):
        if path.name in ("tcr.csv", "epitopes.csv"):
            continue
        name = path.name.lower()
        split = (
            "train"
            if "train" in name
            else "dev"
            if ("valid" in name or "dev" in name)
            else "test"
            if "test" in name
            else None
        )
        if split is None:
            continue
        col = Collector(path, policy)
        for line, row in iter_table_rows(path, list(TITAN_PAIR_COLUMNS)):
            eid, tid = row["ligand_name"], row["sequence_id"]
            rid = f"{eid}|{tid}"
            if eid not in epitopes:
                raise InputError(path, f"epitope {eid!r} is not in epitopes.csv", line=line, record=rid)
            if tid not in tcrs:
                raise InputError(path, f"TCR {tid!r} is not in tcr.csv", line=line, record=rid)
            label = row["label"].removesuffix(".0")
            if label not in BINARY_LABELS:
                raise InputError(path, f"label must be 0 or 1, found {row['label']!r}", line=line, record=rid)
            if col.keep(rid, (tcrs[tid], epitopes[eid]), line):
                splits.setdefault(split, []).append(Example(rid, (tcrs[tid], epitopes[eid]), int(label), tid))
        reports.append(col.report)
    if "train" not in splits:
        raise InputError(
            directory, "no TITAN pair file with 'train' in its name (columns ,ligand_name,sequence_id,label)"
        )
    return splits, reports


def read_tcr_positives(
    path: str | Path, policy: ResiduePolicy = ResiduePolicy()
) -> tuple[list[tuple[str, str]], SkipReport]:
    """(cdr3b, epitope) positives from a VDJdb export (TRB rows) or a `cdr3b`/`epitope` table."""
    header = table_header(path)
    vdjdb = "CDR3" in header and "Epitope" in header
    columns = ["Gene", "CDR3", "Epitope"] if vdjdb else ["cdr3b", "epitope"]
    col = Collector(path, policy)
    out = []
    for line, row in iter_table_rows(path, columns):
        if vdjdb and row["Gene"] != "TRB":
            continue
        cdr3, epitope = (row["CDR3"], row["Epitope"]) if vdjdb else (row["cdr3b"], row["epitope"])
        rid = f"{cdr3}|{epitope}"
        cdr3, epitope = col.clean(cdr3, line, rid), col.clean(epitope, line, rid)
        if col.keep(rid, (cdr3, epitope), line):
            out.append((cdr3, epitope))
    return out, col.report


def read_background(path: str | Path, policy: ResiduePolicy = ResiduePolicy()) -> tuple[list[str], SkipReport]:
    """One CDR3 beta per line (e.g. `tcr_background_cdr3b.txt.gz`)."""
    col = Collector(path, policy)
    out = []
    with open_text(path) as fh:
        for line, text in enumerate(bounded_lines(fh, path), start=1):
            seq = col.clean(text, line, text.strip())
            if col.keep(seq, (seq,), line):
                out.append(seq)
    return out, col.report


def make_tcr_splits(
    positives: list[tuple[str, str]], background: list[str] | None, seed: int, test: float = 0.1, dev: float = 0.1
) -> dict[str, list[Example]]:
    """Epitope- and TCR-disjoint splits of positives, each with as many sampled negatives.

    - `test-unseen-epitope`: every pair of a held-out `test` fraction of epitopes (never in training);
    - `test-unseen-tcr`: pairs of a held-out fraction of the remaining TCRs (their epitopes are seen);
    - `dev`: pairs of another TCR fraction; `train`: the rest.
    Negatives, one per positive and within the split: the TCR paired with an epitope drawn from the
    split's positive rows (so epitope frequencies match the positives and a model cannot win by
    learning epitope priors), never a known positive; with `background`, every other negative is a
    background CDR3 (assigned to one split) paired with the positive's epitope instead.
    """
    buckets: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for cdr3, epi in positives:
        if stable_unit("epitope:" + epi, seed) < test:
            buckets["test-unseen-epitope"].append((cdr3, epi))
        else:
            u = stable_unit("tcr:" + cdr3, seed)
            buckets["test-unseen-tcr" if u < test else "dev" if u < test + dev else "train"].append((cdr3, epi))
    known = set(positives)
    back: dict[str, list[str]] = defaultdict(list)
    for seq in background or []:
        u = stable_unit("background:" + seq, seed)
        back["test-unseen-tcr" if u < test else "dev" if u < test + dev else "train"].append(seq)
    back["test-unseen-epitope"] = back["test-unseen-tcr"]
    rng = np.random.default_rng(int(stable_unit("negatives", seed) * 2**32))
    out = {}
    for split in ("train", "dev", "test-unseen-tcr", "test-unseen-epitope"):
        pos = buckets.get(split, [])
        examples = [Example(f"{c}|{e}", (c, e), 1, c) for c, e in pos]
        drawn: set[tuple[str, str]] = set()
        pool = back.get(split) or []
        for k, (cdr3, epi) in enumerate(pos):
            for _ in range(20):  # rejection sampling; a crowded split may leave a few short
                if pool and k % 2:
                    cand = (pool[int(rng.integers(len(pool)))], epi)
                else:
                    cand = (cdr3, pos[int(rng.integers(len(pos)))][1])
                if cand != (cdr3, epi) and cand not in known and cand not in drawn:
                    drawn.add(cand)
                    examples.append(Example(f"{cand[0]}|{cand[1]}", cand, 0, cand[0]))
                    break
        out[split] = examples
    return out
