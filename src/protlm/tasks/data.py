"""Task examples and splits: what every task reader returns.

An `Example` is one protein (sequence and residue tasks) or one ordered pair of proteins (pair
tasks) with its label, as its task kind (tasks/kinds.py) reads it: a class index; for residue tasks
one class index per residue (-1 where the source marks the residue as unscored, e.g. TAPE's
`valid_mask == 0`); a number (regression); a 0/1 vector over the labels (multi-label). `TaskData` holds the
examples of every split with the label names, and counts of what the readers skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from protlm.errors import InputError, ProtlmError
from protlm.io import SkipReport
from protlm.tasks.kinds import Kind, get_kind

IGNORE = -1  # residue label of an unscored residue


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled example. `parts` is (sequence,) or (sequence_a, sequence_b)."""

    id: str
    parts: tuple[str, ...]
    label: int | float | np.ndarray  # class index; (n_residues,) int8 per residue; a number; (C,) 0/1 multi-label
    group: str = ""  # homology cluster / protein / epitope: examples of a group stay on one side of a split


@dataclass
class TaskData:
    """Examples by split name ('train', 'dev', and one or more test sets) plus the label space."""

    labels: tuple[str, ...]
    splits: dict[str, list[Example]]
    source: str
    reports: list[SkipReport] = field(default_factory=list)
    notes: dict = field(default_factory=dict)  # how splits / negatives were made
    kind: Kind | None = None  # the task's kind (set by `load_task_data`); None: one class per example

    def split(self, name: str) -> list[Example]:
        if name not in self.splits:
            raise ProtlmError(f"{self.source}: no split {name!r}; available: {', '.join(self.splits)}")
        return self.splits[name]

    @property
    def test_splits(self) -> list[str]:
        return [s for s in self.splits if s not in ("train", "dev")]

    def require(self, names: list[str]) -> None:
        """One-line errors for an empty input file, or an empty split among `names` (nothing to train or score)."""
        for r in self.reports:
            if not r.n_read:
                r.require_used()
        empty = [name for name in names if not self.split(name)]
        if empty:
            sizes = ", ".join(f"{k} {len(v):,}" for k, v in self.splits.items())
            are = "splits are" if len(empty) > 1 else "split is"
            raise ProtlmError(f"{self.source}: the {' and '.join(empty)} {are} empty ({sizes}); every split needs "
                              "examples to train and score")  # fmt: skip

    def class_counts(self, name: str) -> dict:
        """The labels of a split as the task's kind summarises them: examples (or scored residues) per class,
        positives per label, or the distribution of a regression target."""
        return (self.kind or get_kind("sequence")).counts([ex.label for ex in self.splits[name]], self.labels)

    def summary(self) -> dict:
        return {
            "source": self.source,
            "labels": list(self.labels),
            "sizes": {k: len(v) for k, v in self.splits.items()},
            "class_counts": {k: self.class_counts(k) for k in self.splits},
            "read": [r.summary() for r in self.reports],
            **self.notes,
        }


def label_index(labels: tuple[str, ...], value: str, path, line: int | None = None, record: str | None = None) -> int:
    """Index of `value` in the label space; a label outside it is an error, never silently mapped."""
    try:
        return labels.index(value)
    except ValueError:
        shown = ", ".join(labels) if len(labels) <= 20 else ", ".join(labels[:20]) + ", ..."
        raise InputError(
            path, f"label {value!r} is not in the label space ({shown})", line=line, record=record
        ) from None


def stable_unit(key: str, seed: int) -> float:
    """A number in [0, 1) that depends only on (key, seed): split assignment that survives reordering."""
    digest = hashlib.blake2b(f"{seed}\t{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def group_split(examples: list[Example], seed: int, dev: float = 0.1, test: float = 0.1) -> dict[str, list[Example]]:
    """Train / dev / test with every group (cluster, protein, epitope) on exactly one side."""
    out: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    for ex in examples:
        u = stable_unit(ex.group or ex.id, seed)
        out["test" if u < test else "dev" if u < test + dev else "train"].append(ex)
    return out


def subsample(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    """At most `limit` examples, chosen by a seeded hash (same choice for the same seed)."""
    if limit is None or len(examples) <= limit:
        return examples
    ranked = sorted(examples, key=lambda ex: stable_unit(ex.id, seed))
    return ranked[:limit]
