"""SCL2205, the built-in default corpus (PyPI `p-scldata==2025.6.0`).

19,074 UniProtKB proteins with one of 13 subcellular-location classes, homology-reduced into
train (15,183) / eval (1,260) / heldout (2,631) and 5 cross-validation folds over train+eval.
The package's `splits.json` holds integer indices into `entries.json` (index -> accession);
`scl2205.csv` holds `entry, seq, scl` with `scl` the label index of `labels.json`. We read those
files directly and expose the splits exactly as shipped.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

from protlm.errors import ProtlmError
from protlm.io.structured import read_json

# Our split names -> the keys of splits.json.
SPLIT_KEYS = {"train": "trn", "eval": "evl", "heldout": "tst"}
N_FOLDS = 5


@dataclass(frozen=True, slots=True)
class SCLEntry:
    """One SCL2205 protein: UniProt accession, raw sequence and location label."""

    index: int  # position in entries.json (= data row index in scl2205.csv)
    id: str
    seq: str
    label: int
    label_name: str


@dataclass(frozen=True)
class SCL2205:
    """The whole data set: entries in `entries.json` order, label names and split indices."""

    entries: tuple[SCLEntry, ...]
    label_names: tuple[str, ...]
    splits: dict[str, tuple[int, ...]]  # "train" | "eval" | "heldout" | "cv{k}-train" | "cv{k}-test"

    def split(self, name: str) -> list[SCLEntry]:
        """Entries of a split: train, eval, heldout, full, train+eval, cv0-train ... cv4-test."""
        if name == "full":
            return list(self.entries)
        parts = name.split("+")
        unknown = [p for p in parts if p not in self.splits]
        if unknown:
            choices = ", ".join(["full", "train+eval", *self.splits])
            raise ProtlmError(f"unknown SCL2205 split {unknown[0]!r}; choose from {choices}")
        return [self.entries[i] for p in parts for i in self.splits[p]]


@cache
def load_scl2205() -> SCL2205:
    """Load SCL2205 from the installed `scldata` package (cached per process)."""
    try:
        data = resources.files("scldata") / "data"
    except ModuleNotFoundError:
        raise ProtlmError("SCL2205 needs the package p-scldata==2025.6.0 (pip install p-scldata==2025.6.0)") from None
    index_to_id = read_json(data / "entries.json", limit=None)
    labels = read_json(data / "labels.json")["index_to_label"]
    label_names = tuple(labels[str(i)] for i in range(len(labels)))
    raw = read_json(data / "splits.json", limit=None)
    with (data / "scl2205.csv").open() as fh:
        rows = {r["entry"]: r for r in csv.DictReader(fh)}
    entries = []
    for i in range(len(index_to_id)):
        row = rows[index_to_id[str(i)]]
        label = int(row["scl"])
        entries.append(SCLEntry(i, row["entry"], row["seq"], label, label_names[label]))
    splits = {ours: tuple(raw[theirs]) for ours, theirs in SPLIT_KEYS.items()}
    for k in range(N_FOLDS):
        splits[f"cv{k}-train"] = tuple(raw["cv"][f"f{k}"]["trn"])
        splits[f"cv{k}-test"] = tuple(raw["cv"][f"f{k}"]["tst"])
    return SCL2205(tuple(entries), label_names, splits)
