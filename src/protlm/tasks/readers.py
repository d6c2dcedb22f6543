"""Readers for the canonical public formats of sequence-level tasks.

- DeepLoc FASTA: `>Q9H400 Cell.membrane-M test` (location, `-M`/`-S`/`-U` membrane flag, optional
  `test` marking the test set).
- DeepSol: the `{train,val,test}_src` (one sequence per line) and `_tgt` (one 0/1 label per line)
  files of the DeepSol release, or a FASTA whose header's last word is the label.
- TAPE / PEER split directories: `<task>_{train,valid,test,...}.{json,lmdb}` with a `primary`
  sequence and a label field (`fold_label`, `localization`, `solubility`, `ss3`, ...).
- Plain tables (TSV/CSV/Parquet) with a sequence column, a label column and optional group column.
Every reader validates residues with the shared `ResiduePolicy`, counts skipped records in a
`SkipReport`, and raises `InputError` (file, line, record) on malformed input.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from protlm.errors import InputError
from protlm.io import ResiduePolicy, SkipReport, iter_fasta, iter_table_rows, open_text, read_sequences
from protlm.io.lmdb_records import iter_lmdb
from protlm.io.structured import read_json
from protlm.io.validate import check_id
from protlm.tasks.data import Example, label_index

DEEPLOC_LABELS = (
    "Nucleus",
    "Cytoplasm",
    "Extracellular",
    "Mitochondrion",
    "Cell.membrane",
    "Endoplasmic.reticulum",
    "Plastid",
    "Golgi.apparatus",
    "Lysosome/Vacuole",
    "Peroxisome",
)
BINARY_LABELS = ("0", "1")
# TAPE / PEER file names: <task>_<split>.<json|lmdb>; `valid` is our `dev`, every other name is a test set.
SPLIT_FILE = re.compile(r"^(?P<task>.+?)_(?P<split>train|valid|test\w*|cb513|ts115|casp12)\.(?P<ext>json|lmdb)$")


class Collector:
    """Validation and bookkeeping for one input file: read = used + skipped, duplicates counted."""

    def __init__(self, path: str | Path, policy: ResiduePolicy):
        self.path, self.policy = path, policy
        self.report = SkipReport(str(path))
        self.seen: set[str] = set()

    def clean(self, seq: str, line: int | None, record: str) -> str:
        check_id(record, self.path, line)
        try:
            cleaned = self.policy.clean(seq.strip())
        except ValueError as e:
            raise InputError(self.path, str(e), line=line, record=record) from None
        self.report.note(seq.strip(), record, line)
        return cleaned

    def keep(self, rid: str, parts: tuple[str, ...], line: int | None) -> bool:
        """Count a record; False (skipped, with the reason) when empty, duplicate or too long."""
        check_id(rid, self.path, line)
        self.report.n_read += 1
        if not parts or not all(parts):
            self.report.skip("empty sequence", rid, line)
        elif rid in self.seen:
            self.report.skip("duplicate id", rid, line)
        elif self.policy.max_length is not None and max(map(len, parts)) > self.policy.max_length:
            self.report.skip(f"longer than {self.policy.max_length} residues", rid, line)
        else:
            self.seen.add(rid)
            self.report.n_used += 1
            return True
        return False


def read_deeploc_fasta(
    path: str | Path, policy: ResiduePolicy = ResiduePolicy(), labels: tuple[str, ...] = DEEPLOC_LABELS
) -> tuple[dict[str, list[Example]], SkipReport]:
    """DeepLoc FASTA -> {'train': [...], 'test': [...]} (records whose header ends in `test` are test)."""
    col = Collector(path, policy)
    out: dict[str, list[Example]] = {"train": [], "test": []}
    for rec in iter_fasta(path):
        words = rec.description.split()
        if not words:
            raise InputError(
                path, "header has no location (expected '>ID Location-M [test]')", line=rec.line, record=rec.id
            )
        location = re.sub(r"-[MSU]$", "", words[0])
        label = label_index(labels, location, path, rec.line, rec.id)
        is_test = len(words) > 1 and words[1].lower() == "test"
        seq = col.clean(rec.seq, rec.line, rec.id)
        if col.keep(rec.id, (seq,), rec.line):
            out["test" if is_test else "train"].append(Example(rec.id, (seq,), label, rec.id))
    return out, col.report


def read_labelled_fasta(
    path: str | Path, labels: tuple[str, ...], policy: ResiduePolicy = ResiduePolicy()
) -> tuple[list[Example], SkipReport]:
    """FASTA whose header's last word is the label: `>P12345 1` or `>P12345 some text soluble`."""
    col = Collector(path, policy)
    out = []
    for rec in iter_fasta(path):
        words = (rec.id + " " + rec.description).split()
        if len(words) < 2:
            raise InputError(path, "header has no label (expected '>ID ... LABEL')", line=rec.line, record=rec.id)
        label = label_index(labels, words[-1], path, rec.line, rec.id)
        seq = col.clean(rec.seq, rec.line, rec.id)
        if col.keep(rec.id, (seq,), rec.line):
            out.append(Example(rec.id, (seq,), label, rec.id))
    return out, col.report


def read_deepsol(
    directory: str | Path, policy: ResiduePolicy = ResiduePolicy()
) -> tuple[dict[str, list[Example]], list[SkipReport]]:
    """DeepSol release: `{train,val,test}_src` sequences and `_tgt` 0/1 labels, line by line."""
    directory = Path(directory)
    names = {"train": "train", "val": "dev", "test": "test"}
    splits, reports = {}, []
    for theirs, ours in names.items():
        src, tgt = directory / f"{theirs}_src", directory / f"{theirs}_tgt"
        if not src.is_file():
            continue
        if not tgt.is_file():
            raise InputError(tgt, f"file not found (labels for {src.name})")
        col = Collector(src, policy)
        with open_text(src) as fs, open_text(tgt) as ft:
            seqs, tgts = _lines(fs, src), _lines(ft, tgt)
        if len(seqs) != len(tgts):
            raise InputError(tgt, f"{len(tgts)} labels for {len(seqs)} sequences in {src.name}")
        examples = []
        for line, (seq, lab) in enumerate(zip(seqs, tgts, strict=True), start=1):
            rid = f"{theirs}:{line}"
            label = label_index(BINARY_LABELS, lab.strip(), tgt, line, rid)
            seq = col.clean(seq, line, rid)
            if col.keep(rid, (seq,), line):
                examples.append(Example(rid, (seq,), label, rid))
        splits[ours] = examples
        reports.append(col.report)
    if "train" not in splits:
        raise InputError(directory, "no DeepSol train_src / train_tgt files in this directory")
    return splits, reports


def _lines(fh, path: Path) -> list[str]:
    """The lines of a text file without their endings, each at most `MAX_LINE` characters."""
    from protlm.io.tables import bounded_lines

    return [text.rstrip("\n") for text in bounded_lines(fh, path)]


def split_files(directory: str | Path) -> dict[str, Path]:
    """TAPE/PEER split files in a directory: {'train': ..., 'dev': ..., 'test_fold_holdout': ...}."""
    found: dict[str, Path] = {}
    for p in sorted(Path(directory).iterdir()):
        m = SPLIT_FILE.match(p.name)
        if m:
            split = {"valid": "dev"}.get(m["split"], m["split"])
            if split in found:
                raise InputError(p, f"two files for split {split!r} ({found[split].name} and {p.name})")
            found[split] = p
    if "train" not in found and not any(s.startswith("test") for s in found):
        raise InputError(directory, "no TAPE/PEER split files (<task>_train.json|lmdb, _valid, _test...) here")
    return found


def iter_records(path: str | Path) -> Iterator[tuple[int | None, str, dict]]:
    """(line or None, record name, dict) from a TAPE JSON list or a TAPE/PEER LMDB."""
    path = Path(path)
    if path.suffix == ".json":
        try:
            items = read_json(path, limit=None)
        except json.JSONDecodeError as e:
            raise InputError(path, f"invalid JSON ({e.msg})", line=e.lineno) from None
        if not isinstance(items, list):
            raise InputError(path, "expected a JSON list of records")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise InputError(path, f"record is a {type(item).__name__}, expected an object", record=str(i))
            yield None, str(item.get("id", i)), item
    else:
        for i, item in iter_lmdb(path):
            yield None, str(item.get("id", item.get("name", i))), item


def read_split_dir(
    directory: str | Path,
    make_label: Callable[[dict, Path, str], int | np.ndarray],
    policy: ResiduePolicy = ResiduePolicy(),
    group_field: str | None = None,
) -> tuple[dict[str, list[Example]], list[SkipReport]]:
    """Every split file of a TAPE/PEER directory; `make_label(record, path, name)` builds the label."""
    splits, reports = {}, []
    for split, path in split_files(directory).items():
        col = Collector(path, policy)
        examples = []
        for line, rid, item in iter_records(path):
            if "primary" not in item:
                raise InputError(path, "record lacks the field 'primary'", line=line, record=rid)
            seq = col.clean(str(item["primary"]), line, rid)
            label = make_label(item, path, rid)
            if col.keep(rid, (seq,), line):
                group = str(item.get(group_field, "")) if group_field else ""
                examples.append(Example(rid, (seq,), label, group or rid))
        splits[split] = examples
        reports.append(col.report)
    return splits, reports


def class_field(name: str, labels: tuple[str, ...]) -> Callable[[dict, Path, str], int]:
    """Label maker for an integer class field (`fold_label`, `localization`, `solubility`)."""

    def make(item: dict, path: Path, rid: str) -> int:
        if name not in item:
            raise InputError(path, f"record lacks the field {name!r}", record=rid)
        value = item[name]
        value = int(np.asarray(value).reshape(-1)[0]) if not isinstance(value, int | str) else value
        return label_index(labels, str(value), path, record=rid)

    return make


def read_table(
    path: str | Path,
    seq_col: str,
    label_col: str,
    labels: tuple[str, ...],
    id_col: str,
    group_col: str | None = None,
    policy: ResiduePolicy = ResiduePolicy(),
) -> tuple[list[Example], SkipReport]:
    """Sequence-level examples from a TSV/CSV/Parquet table."""
    col = Collector(path, policy)
    columns = [id_col, seq_col, label_col] + ([group_col] if group_col else [])
    out = []
    for line, row in iter_table_rows(path, columns):
        rid = row[id_col]
        seq = col.clean(row[seq_col], line, rid)
        label = label_index(labels, row[label_col], path, line, rid)
        if col.keep(rid, (seq,), line):
            out.append(Example(rid, (seq,), label, row[group_col] if group_col else rid))
    return out, col.report


def read_labelled_assemblies(
    path: str | Path, sequences: str | Path | None = None, policy: ResiduePolicy = ResiduePolicy()
) -> tuple[list[tuple[str, Example]], tuple[str, ...], SkipReport]:
    """Labelled multi-protein examples: [(split or '', example)], label names, report.

    - FASTA: chains joined by ':' (`>cplx1 ... LABEL` / `MKV...:MSQ...:MAL...`), label last in the header;
    - table (TSV/CSV/Parquet): `id, label` and either `sequence` (chains joined by ':') or `members`
      (protein ids joined by ';', looked up in `sequences`); optional `split` and `group` columns.
    Labels are the sorted distinct values of the file (numerically when they are all integers).
    """
    from protlm.io import is_fasta
    from protlm.io.inference import split_chains
    from protlm.io.tables import table_header
    from protlm.pairs.assemblies import resolve_members

    col = Collector(path, policy)
    rows: list[tuple[str, str, tuple[str, ...], str, str, int]] = []  # split, id, chains, label, group, line
    if is_fasta(path):
        for rec in iter_fasta(path):
            words = rec.description.split()
            if not words:
                raise InputError(path, "header has no label (expected '>ID ... LABEL')", line=rec.line, record=rec.id)
            chains = split_chains(rec.seq, policy, path, rec.line, rec.id) if rec.seq.strip() else ()
            rows.append(("", rec.id, chains, words[-1], rec.id, rec.line))
    else:
        header = table_header(path)
        if "sequence" not in header and "members" not in header:
            raise InputError(path, f"needs a 'sequence' or 'members' column; the file has: {', '.join(header)}", line=1)
        by_members = "sequence" not in header
        if by_members and sequences is None:
            raise InputError(path, "a 'members' column needs the members' sequences: give --sequences", line=1)
        lookup = {r.id: r.seq for r in read_sequences(sequences, policy)} if by_members else {}
        extra = [c for c in ("split", "group") if c in header]
        columns = ["id", "label", "members" if by_members else "sequence", *extra]
        for line, row in iter_table_rows(path, columns):
            rid = row["id"]
            if by_members:
                chains = resolve_members(row["members"], lookup, path, line, rid, sequences, min_members=1)[1]
            else:
                chains = split_chains(row["sequence"], policy, path, line, rid) if row["sequence"] else ()
            rows.append((row.get("split", ""), rid, chains, row["label"], row.get("group") or rid, line))
    names = {r[3] for r in rows}
    labels = tuple(sorted(names, key=int) if all(n.lstrip("-").isdigit() for n in names) else sorted(names))
    out = []
    for split, rid, chains, label, group, line in rows:
        index = label_index(labels, label, path, line, rid)
        if col.keep(rid, chains, line):
            out.append((split, Example(rid, chains, index, group)))
    return out, labels, col.report


def number_field(name: str) -> Callable[[dict, Path, str], float]:
    """Label maker for a numeric field (TAPE's `stability_score`, `log_fluorescence`: a number or a list of one)."""

    def make(item: dict, path: Path, rid: str) -> float:
        if name not in item:
            raise InputError(path, f"record lacks the field {name!r}", record=rid)
        return parse_number(item[name], path, None, rid, name)

    return make


def parse_number(value, path, line: int | None, rid: str, column: str) -> float:
    """A finite number from a table cell or a record field (a list of one number too); InputError otherwise."""
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        shown = repr(value)[:40]
        raise InputError(path, f"{column} {shown} is not a finite number", line=line, record=rid)
    return number


def read_target_table(
    path: str | Path, column: str, parse: Callable[[str, int, str], object], policy: ResiduePolicy = ResiduePolicy()
) -> tuple[list[tuple[str, Example]], SkipReport]:
    """[(split or '', example)] from a TSV/CSV/Parquet table with `sequence` and a target `column` (parsed by
    `parse(cell, line, id)`), and optional `id` (else `row<line>`), `split` and `group` columns."""
    from protlm.io.tables import table_header

    header = table_header(path)
    for c in ("sequence", column):
        if c not in header:
            raise InputError(path, f"missing column {c}; the file has: {', '.join(header)}", line=1)
    col = Collector(path, policy)
    extra = [c for c in ("id", "split", "group") if c in header]
    out = []
    for line, row in iter_table_rows(path, ["sequence", column, *extra]):
        rid = row.get("id") or f"row{line}"
        seq = col.clean(row["sequence"], line, rid)
        target = parse(row[column], line, rid)
        if col.keep(rid, (seq,), line):
            out.append((row.get("split", ""), Example(rid, (seq,), target, row.get("group") or rid)))
    return out, col.report


def label_sets(path: str | Path, column: str = "labels") -> Callable[[str, int, str], np.ndarray]:
    """Parser of a `;`-joined label-set column into a 0/1 vector over the file's labels (sorted); `.labels` has them."""
    names: set[str] = set()
    for _, row in iter_table_rows(path, [column]):
        names.update(x.strip() for x in row[column].split(";") if x.strip())
    labels = tuple(sorted(names))
    index = {name: k for k, name in enumerate(labels)}

    def parse(cell: str, line: int, rid: str) -> np.ndarray:
        vector = np.zeros(len(labels), np.uint8)
        for name in (x.strip() for x in cell.split(";")):
            if name:
                vector[index[name]] = 1
        return vector

    parse.labels = labels  # type: ignore[attr-defined]
    return parse
