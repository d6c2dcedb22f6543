"""One residue-validation policy for every reader, and the report of skipped records.

Policy (see `ResiduePolicy`): letters are upper-cased; the 20 standard amino acids and X pass;
the rare letters U (selenocysteine), O (pyrrolysine), B, Z and J (ambiguity codes) become X, or
are rejected when `strict`; one trailing `*` (stop) is stripped; anything else is an error.
Empty records, duplicate ids and sequences over `max_length` are skipped and counted in a
`SkipReport`, so that records read = records used + records skipped, always.

Ids are at most `MAX_ID` characters (`check_id`, called by every reader before anything else names
the record): a longer one is an error, so that no id costs more than a line of text.

A sequence of 20 or more letters, all of them A, C, G, T, U or N, is DNA or RNA in all likelihood (a
protein drawn from the residue frequencies is so composed with probability under 1e-11). It is kept
with a warning in the report (`SkipReport.note`), or rejected under `strict`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from protlm.errors import InputError

STANDARD = "ACDEFGHIKLMNPQRSTVWY"
UNKNOWN = "X"
RARE = "UOBZJ"
ALPHABET = STANDARD + UNKNOWN

# Translation tables built once: lower -> upper, rare -> X (lenient) or kept (strict, then rejected).
_UPPER = {ord(c.lower()): c for c in STANDARD + UNKNOWN + RARE}
_LENIENT = {**_UPPER, **{ord(c): UNKNOWN for c in RARE}, **{ord(c.lower()): UNKNOWN for c in RARE}}
_DELETE_VALID = {ord(c): None for c in ALPHABET}
RULES_VERSION = 2  # 2: --strict rejects nucleotide sequences
NUCLEOTIDES = "ACGTUN"
NUCLEOTIDE_MIN = 20
_DELETE_NT = {ord(c): None for c in NUCLEOTIDES + NUCLEOTIDES.lower()}
NUCLEOTIDE_MESSAGE = "looks like a nucleotide sequence (only A, C, G, T, U, N); protlm reads proteins"


MAX_ID = 1 << 10  # 1,024 characters: accessions have 6-10 (UniProt), STRING's ~25, a FASTA word ~60
NUCLEOTIDE_PATTERN = f"[{NUCLEOTIDES}{NUCLEOTIDES.lower()}]{{{NUCLEOTIDE_MIN},}}\\*?"  # the same test for SQL (RE2)


def looks_nucleotide(seq: str) -> bool:
    """At least `NUCLEOTIDE_MIN` letters, all of them A, C, G, T, U or N (any case; a final `*` aside)."""
    seq = seq.removesuffix("*")
    return len(seq) >= NUCLEOTIDE_MIN and not seq[:64].translate(_DELETE_NT) and not seq.translate(_DELETE_NT)


def check_id(rid: str, source, line: int | None = None) -> str:
    """`rid`, or an `InputError` naming the file and line (and the id's start) when it is over `MAX_ID`."""
    if len(rid) > MAX_ID:
        raise InputError(source, f"an id of {len(rid):,} characters (at most {MAX_ID:,})", line=line,
                         record=f"{rid[:24]}...")  # fmt: skip
    return rid


@dataclass(frozen=True)
class ResiduePolicy:
    """How sequences are checked and cleaned.

    strict: reject the rare letters U, O, B, Z, J instead of mapping them to X, and nucleotide sequences.
    max_length: sequences longer than this (in residues) are skipped and reported; None = no limit.
    """

    strict: bool = False
    max_length: int | None = None

    def clean(self, seq: str) -> str:
        """Return the cleaned sequence or raise ValueError naming the first bad residue."""
        if seq.endswith("*"):
            seq = seq[:-1]
        if self.strict and looks_nucleotide(seq):
            return _raise(NUCLEOTIDE_MESSAGE)
        seq = seq.translate(_UPPER if self.strict else _LENIENT)
        bad = seq.translate(_DELETE_VALID)
        if bad:
            ch = bad[0]
            pos = seq.index(ch) + 1
            if ch in RARE:
                return _raise(f"rare residue '{ch}' at position {pos} rejected by --strict")
            return _raise(f"invalid residue {ch!r} at position {pos}")
        return seq

    def keep(self, chains: bool = False) -> int | None:
        """How many characters of a raw sequence a reader must keep to apply this policy (None: all); one
        longer is read past, never stored, and skipped as too long. Exact: a sequence that passes has at
        most `max_length` residues and a final '*'; an assembly (`chains`) as many ':' again at most, each
        of its chains being one residue or more."""
        if self.max_length is None:
            return None
        return (2 if chains else 1) * self.max_length + 2

    def identity(self) -> dict:
        """What stores record of the policy (in their fingerprint), with the version of the rules."""
        return {"strict": self.strict, "max_length": self.max_length, "rules": RULES_VERSION}

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
    nucleotide: int = 0  # records kept that look like DNA / RNA (a warning, not a skip)
    nucleotide_first: str = ""

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def skip(self, reason: str, record: str, line: int | None = None) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < self.max_examples:
            where = f"line {line} " if line is not None else ""
            self.examples.append(f"{where}(record {record}): {reason}")

    def require_used(self) -> None:
        """Raise `InputError` naming the file when no record was used: nothing to write is an error."""
        if self.n_used:
            return
        if not self.n_read:
            raise InputError(self.source, "no records (an empty file?)")
        raise InputError(self.source, f"no usable records ({self.summary().removeprefix(self.source + ': ')})")

    def note(self, raw_seq: str, record: str, line: int | None = None) -> None:
        """Count a kept record that looks like a nucleotide sequence (see `looks_nucleotide`)."""
        if looks_nucleotide(raw_seq):
            self.nucleotide += 1
            if not self.nucleotide_first:
                self.nucleotide_first = (f"line {line} " if line is not None else "") + f"(record {record})"

    def merge(self, other: SkipReport) -> None:
        self.n_read += other.n_read
        self.n_used += other.n_used
        self.skipped.update(other.skipped)
        self.examples.extend(other.examples[: max(0, self.max_examples - len(self.examples))])
        self.nucleotide += other.nucleotide
        self.nucleotide_first = self.nucleotide_first or other.nucleotide_first

    def as_dict(self) -> dict:
        """The report as stored in a store's JSON (`from_dict` reads it back)."""
        return {"read": self.n_read, "used": self.n_used, "skipped": dict(self.skipped), "examples": self.examples,
                "nucleotide": self.nucleotide, "nucleotide_first": self.nucleotide_first}  # fmt: skip

    @classmethod
    def from_dict(cls, source: str, d: dict) -> SkipReport:
        return cls(str(source), d["read"], d["used"], Counter(d["skipped"]), list(d["examples"]),
                   nucleotide=d.get("nucleotide", 0), nucleotide_first=d.get("nucleotide_first", ""))  # fmt: skip

    def warning(self) -> str:
        """The nucleotide warning ('' when there is none)."""
        if not self.nucleotide:
            return ""
        n = self.nucleotide
        what = f"{n:,} records look like nucleotide sequences" if n > 1 else "1 record looks like a nucleotide sequence"
        return f"warning: {what} (only A, C, G, T, U, N; first: {self.nucleotide_first}); --strict rejects them"

    def summary(self) -> str:
        """One line: `FILE: 1,000 records read, 998 used, 2 skipped (1 empty sequence, 1 duplicate id)`."""
        text = f"{self.source}: {self.n_read:,} records read, {self.n_used:,} used, {self.n_skipped:,} skipped"
        if self.skipped:
            text += " (" + ", ".join(f"{n:,} {reason}" for reason, n in self.skipped.most_common()) + ")"
        if self.nucleotide:
            text += "; " + self.warning()
        return text
