"""One residue-validation policy for every reader, and the report of skipped records.

Policy (see `ResiduePolicy`): letters are upper-cased; the 20 standard amino acids and X pass;
the rare letters U (selenocysteine), O (pyrrolysine), B, Z and J (ambiguity codes) become X, or
are rejected when `strict`; one trailing `*` (stop) is stripped; anything else is an error.
Empty records, duplicate ids and sequences over `max_length` are skipped and counted in a
`SkipReport`, so that records read = records used + records skipped, always.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

STANDARD = "ACDEFGHIKLMNPQRSTVWY"
UNKNOWN = "X"
RARE = "UOBZJ"
ALPHABET = STANDARD + UNKNOWN

# Translation tables built once: lower -> upper, rare -> X (lenient) or kept (strict, then rejected).
_UPPER = {ord(c.lower()): c for c in STANDARD + UNKNOWN + RARE}
_LENIENT = {**_UPPER, **{ord(c): UNKNOWN for c in RARE}, **{ord(c.lower()): UNKNOWN for c in RARE}}
_DELETE_VALID = {ord(c): None for c in ALPHABET}


@dataclass(frozen=True)
class ResiduePolicy:
    """How sequences are checked and cleaned.

    strict: reject the rare letters U, O, B, Z, J instead of mapping them to X.
    max_length: sequences longer than this (in residues) are skipped and reported; None = no limit.
    """

    strict: bool = False
    max_length: int | None = None

    def clean(self, seq: str) -> str:
        """Return the cleaned sequence or raise ValueError naming the first bad residue."""
        if seq.endswith("*"):
            seq = seq[:-1]
        seq = seq.translate(_UPPER if self.strict else _LENIENT)
        bad = seq.translate(_DELETE_VALID)
        if bad:
            ch = bad[0]
            pos = seq.index(ch) + 1
            if ch in RARE:
                return _raise(f"rare residue '{ch}' at position {pos} rejected by --strict")
            return _raise(f"invalid residue {ch!r} at position {pos}")
        return seq

    def pattern(self) -> str:
        """A regular expression (Python `re` and RE2, so DuckDB too) that a sequence fully matches
        iff `clean` accepts it."""
        letters = STANDARD + UNKNOWN + ("" if self.strict else RARE)
        return f"[{letters}{letters.lower()}]*\\*?"

    def sql_clean(self, column: str) -> str:
        """DuckDB expression equal to `clean(column)` for values that match `pattern()`; `column` is
        an identifier chosen by the caller, never input text."""
        cleaned = f"upper(regexp_replace({column}, '\\*$', ''))"
        return cleaned if self.strict else f"translate({cleaned}, '{RARE}', '{UNKNOWN * len(RARE)}')"


def _raise(message: str) -> str:
    raise ValueError(message)


@dataclass
class SkipReport:
    """Counts of records read, used and skipped (by reason), with the first few examples."""

    source: str
    n_read: int = 0
    n_used: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 5

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def skip(self, reason: str, record: str, line: int | None = None) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < self.max_examples:
            where = f"line {line} " if line is not None else ""
            self.examples.append(f"{where}(record {record}): {reason}")

    def merge(self, other: SkipReport) -> None:
        self.n_read += other.n_read
        self.n_used += other.n_used
        self.skipped.update(other.skipped)
        self.examples.extend(other.examples[: max(0, self.max_examples - len(self.examples))])

    def summary(self) -> str:
        """One line: `FILE: 1,000 records read, 998 used, 2 skipped (1 empty sequence, 1 duplicate id)`."""
        text = f"{self.source}: {self.n_read:,} records read, {self.n_used:,} used, {self.n_skipped:,} skipped"
        if self.skipped:
            text += " (" + ", ".join(f"{n:,} {reason}" for reason, n in self.skipped.most_common()) + ")"
        return text
