"""Substitution variants in ProteinGym's notation: `A23C`, `A23C:G45T` (1-based, colon-joined).

A variant is a tuple of `Mutation`s (0-based positions, in increasing order). Parsing checks what can be
checked without the wild type (the notation, amino-acid letters, one mutation per position); `check`
checks a variant against the wild type (position in range, wild-type letter). Errors are `ValueError`s
with a short message; the readers add the file, line and record.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from protlm.io.validate import STANDARD

SEPARATOR = ":"
_SUBSTITUTION = re.compile(r"([A-Za-z])([0-9]{1,9})([A-Za-z])")
_INDEL = re.compile(r"(del|ins|dup|fs|[-_*~])", re.IGNORECASE)


class Mutation(NamedTuple):
    """One substitution: 0-based position, wild-type and mutant amino acids."""

    pos: int
    wt: str
    mt: str

    def __str__(self) -> str:
        return f"{self.wt}{self.pos + 1}{self.mt}"


Variant = tuple[Mutation, ...]


def parse_mutant(text: str) -> Variant:
    """`A23C:G45T` -> (Mutation(22, 'A', 'C'), Mutation(44, 'G', 'T')), sorted by position."""
    text = text.strip()
    if not text:
        raise ValueError("empty mutant")
    mutations = [_parse_one(part.strip()) for part in text.split(SEPARATOR)]
    mutations.sort()
    for a, b in zip(mutations, mutations[1:], strict=False):
        if a.pos == b.pos:
            raise ValueError(f"position {a.pos + 1} is mutated twice")
    return tuple(mutations)


def _parse_one(part: str) -> Mutation:
    match = _SUBSTITUTION.fullmatch(part)
    if match is None:
        kind = "an indel or stop" if _INDEL.search(part) else "not a substitution"
        raise ValueError(f"{part[:40]!r} is {kind}; a substitution file holds mutants like A23C or A23C:G45T")
    wt, pos, mt = match.group(1).upper(), int(match.group(2)), match.group(3).upper()
    for letter in (wt, mt):
        if letter not in STANDARD:
            raise ValueError(f"{part}: {letter!r} is not one of the 20 amino acids")
    if pos < 1:
        raise ValueError(f"{part}: positions start at 1")
    return Mutation(pos - 1, wt, mt)


def check(variant: Variant, wt: str) -> None:
    """ValueError unless every mutation lies in `wt` and names the wild-type letter at its position."""
    for m in variant:
        if m.pos >= len(wt):
            raise ValueError(f"{m}: position {m.pos + 1} is past the wild type's {len(wt):,} residues")
        if wt[m.pos] != m.wt:
            raise ValueError(f"{m}: the wild type has {wt[m.pos]} at position {m.pos + 1}, not {m.wt}")


def apply(variant: Variant, wt: str) -> str:
    """The mutated sequence (the variant checked against `wt` first)."""
    check(variant, wt)
    seq = list(wt)
    for m in variant:
        seq[m.pos] = m.mt
    return "".join(seq)


def undo(variant: Variant, mutated: str) -> str:
    """The wild type that `mutated` comes from: each mutated position put back to its wild-type letter."""
    seq = list(mutated)
    for m in variant:
        if m.pos >= len(seq):
            raise ValueError(f"{m}: position {m.pos + 1} is past mutated_sequence's {len(seq):,} residues")
        if seq[m.pos] != m.mt:
            raise ValueError(f"{m}: mutated_sequence has {seq[m.pos]} at position {m.pos + 1}, not {m.mt}")
        seq[m.pos] = m.wt
    return "".join(seq)


def mutant_name(variant: Variant) -> str:
    return SEPARATOR.join(map(str, variant))
