"""Assemblies: inputs of two or more proteins, encoded with the tokenizer's template (`<s> A </s></s> B </s></s> C </s>`).

Sources:
- FASTA whose records join chains with `:` (ColabFold's convention for complexes):
  `>complex1` / `MKV...:MSQ...:MAL...`; chain k of record R is named `R:k` (1-based).
- A table (TSV/CSV/Parquet) with `id` and `members` (`;`-joined protein ids) plus a sequence
  file (FASTA/table) to look the members up; a member missing from it is an error naming the line.
Chains are validated with the shared residue policy one by one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from protlm.errors import InputError
from protlm.io import ResiduePolicy, SkipReport, is_fasta, iter_table_rows, read_sequences
from protlm.io.inference import raw_chains
from protlm.io.validate import check_id


@dataclass(frozen=True, slots=True)
class Assembly:
    id: str
    member_ids: tuple[str, ...]
    seqs: tuple[str, ...]


def read_assemblies(
    path: str | Path,
    sequences: str | Path | None = None,
    policy: ResiduePolicy = ResiduePolicy(),
    report: SkipReport | None = None,
) -> Iterator[Assembly]:
    """Stream assemblies from a `:`-joined FASTA or from an `id, members` table plus `sequences`."""
    report = report if report is not None else SkipReport(str(path))
    if not Path(path).is_file():
        raise InputError(path, "file not found")
    if is_fasta(path):
        for rec, chains in raw_chains(path, policy, report):
            report.n_used += 1
            yield Assembly(rec.id, tuple(f"{rec.id}:{k}" for k in range(1, len(chains) + 1)), chains)
        return
    if sequences is None:
        raise InputError(
            path, "an assembly table (id, members) needs the members' sequences: give --assembly-sequences"
        )
    lookup = {r.id: r.seq for r in read_sequences(sequences, policy)}
    for line, row in iter_table_rows(path, ["id", "members"]):
        check_id(row["id"], path, line)
        report.n_read += 1
        members, seqs = resolve_members(row["members"], lookup, path, line, row["id"], sequences)
        report.n_used += 1
        yield Assembly(row["id"], members, seqs)


def resolve_members(
    field: str, lookup: dict[str, str], path, line: int, record: str, sequences, min_members: int = 2
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`;`-joined member ids -> (ids, sequences); too few members or an unknown id is an error."""
    members = tuple(check_id(m.strip(), path, line) for m in field.split(";") if m.strip())
    if len(members) < min_members:
        raise InputError(
            path, f"an assembly needs at least {min_members} members, found {len(members)}", line=line, record=record
        )
    missing = [m for m in members if m not in lookup]
    if missing:
        raise InputError(path, f"protein {missing[0]!r} is not in {sequences}", line=line, record=record)
    return members, tuple(lookup[m] for m in members)
