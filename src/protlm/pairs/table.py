"""The protlm pair table: `id_a, id_b, seq_a, seq_b, label, split` as Parquet (or TSV/CSV).

`label` is 1 for binding and 0 for non-binding (optional: absent = all binding); `split` is
train / dev / test (optional: absent = all train). Sequences are validated with the same
`ResiduePolicy` as every other reader; self-pairs and duplicate unordered pairs are skipped and
counted, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from protlm.errors import InputError, ProtlmError
from protlm.io import ResiduePolicy, SkipReport, iter_table_rows, looks_nucleotide
from protlm.io.atomic import atomic_open, output_dir
from protlm.io.tables import table_header, table_kind
from protlm.io.validate import check_id

PAIR_COLUMNS = ("id_a", "id_b", "seq_a", "seq_b", "label", "split")
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True, slots=True)
class Pair:
    id_a: str
    id_b: str
    seq_a: str
    seq_b: str
    label: int = 1
    split: str = "train"


def read_pairs(
    path: str | Path, policy: ResiduePolicy = ResiduePolicy(), report: SkipReport | None = None
) -> Iterator[Pair]:
    """Stream validated pairs from a pair table, or from a directory of `pairs*.parquet` shards."""
    if Path(path).is_dir():
        shards = sorted(Path(path).glob("pairs*.parquet"))
        if not shards:
            raise InputError(path, "directory holds no pairs*.parquet shards")
        report = report if report is not None else SkipReport(str(path))
        for shard in shards:
            yield from read_pairs(shard, policy, report)
        return
    if not Path(path).is_file():
        raise InputError(path, "file not found")
    report = report if report is not None else SkipReport(str(path))
    header = table_header(path)
    columns = [c for c in PAIR_COLUMNS if c in header or c in ("id_a", "id_b", "seq_a", "seq_b")]
    seen: set[tuple[str, str]] = set()
    for line, row in iter_table_rows(path, columns):
        check_id(row["id_a"], path, line)
        check_id(row["id_b"], path, line)
        report.n_read += 1
        rid = f"{row['id_a']}|{row['id_b']}"
        try:
            seq_a, seq_b = policy.clean(row["seq_a"]), policy.clean(row["seq_b"])
        except ValueError as e:
            raise InputError(path, str(e), line=line, record=rid) from None
        label = row.get("label", "1")
        if label not in ("0", "1", "0.0", "1.0", "True", "False", "true", "false"):
            raise InputError(path, f"label must be 0 or 1, found {label!r}", line=line, record=rid)
        split = row.get("split", "train") or "train"
        if split not in SPLITS:
            raise InputError(path, f"split must be one of {', '.join(SPLITS)}, found {split!r}", line=line, record=rid)
        key = tuple(sorted((row["id_a"], row["id_b"])))
        if not seq_a or not seq_b:
            report.skip("empty sequence", rid, line)
        elif row["id_a"] == row["id_b"]:
            report.skip("self-pair", rid, line)
        elif key in seen:
            report.skip("duplicate pair", rid, line)
        else:
            seen.add(key)
            report.note(row["seq_a"] if looks_nucleotide(row["seq_a"]) else row["seq_b"], rid, line)
            report.n_used += 1
            yield Pair(row["id_a"], row["id_b"], seq_a, seq_b, int(label in ("1", "1.0", "True", "true")), split)


def pair_table_path(out: str | Path) -> Path:
    """Where a pair table asked for as `out` is written. A directory (one that exists, or a name without
    an extension, which is what `--out DIR/` reaches us as) gets `pairs.parquet` inside, as `pairs build`
    writes it and `pairs stats DIR` reads it: an extensionless file would be Parquet that no reader
    recognises. A file name must say its format, as readers take the format from the name."""
    out = Path(out)
    if out.is_dir() or not out.suffix:
        return output_dir(out) / "pairs.parquet"
    try:
        table_kind(out)
    except InputError:
        raise ProtlmError(f"{out}: unknown pair table format; name a .parquet, .tsv or .csv file "
                          "(optionally .gz), or a directory (pairs.parquet is written inside)") from None  # fmt: skip
    return out


def write_pairs(pairs: Iterable[Pair], path: str | Path) -> int:
    """Write pairs to `path` in the format its name says (`pair_table_path`: .parquet, .tsv or .csv,
    optionally .gz; a directory gets pairs.parquet). Returns the count."""
    import pandas as pd

    df = pd.DataFrame([_asdict(p) for p in pairs], columns=list(PAIR_COLUMNS))
    path = pair_table_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = table_kind(path)
    with atomic_open(path, "wb") as fh:
        if kind == "parquet":
            df.to_parquet(fh, index=False)
        else:
            gzip = "gzip" if path.name.lower().endswith(".gz") else None
            df.to_csv(fh, sep="\t" if kind == "tsv" else ",", index=False, compression=gzip)
    return len(df)


def _asdict(p: Pair) -> dict:
    return {c: getattr(p, c) for c in PAIR_COLUMNS}
