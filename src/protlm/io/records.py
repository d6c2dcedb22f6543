"""Record types and the one validation step shared by every reader."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from protlm.errors import InputError
from protlm.io.validate import ResiduePolicy, SkipReport, check_id


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as read from a file, before validation. `line` is 1-based (header or row). `truncated`:
    the reader kept only the start of a sequence longer than the caller's length limit."""

    id: str
    seq: str
    line: int
    description: str = ""
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class SeqRecord:
    """A validated protein sequence."""

    id: str
    seq: str
    description: str = ""


def validated(
    raw: Iterable[RawRecord],
    source: str | Path,
    policy: ResiduePolicy = ResiduePolicy(),
    report: SkipReport | None = None,
) -> Iterator[SeqRecord]:
    """Clean each record under `policy`; skip (and count) empty, duplicate and over-long ones.

    Invalid residues and ids over `MAX_ID` characters raise `InputError` naming the file, line and record.
    """
    report = report if report is not None else SkipReport(str(source))
    seen: set[str] = set()
    for rec in raw:
        check_id(rec.id, source, rec.line)
        report.n_read += 1
        if rec.id in seen:
            report.skip("duplicate id", rec.id, rec.line)
            continue
        seen.add(rec.id)
        if rec.truncated:
            report.skip(f"longer than {policy.max_length} residues", rec.id, rec.line)
            continue
        try:
            seq = policy.clean(rec.seq)
        except ValueError as e:
            raise InputError(source, str(e), line=rec.line, record=rec.id) from None
        if not seq:
            report.skip("empty sequence", rec.id, rec.line)
            continue
        report.note(rec.seq, rec.id, rec.line)
        if policy.max_length is not None and len(seq) > policy.max_length:
            report.skip(f"longer than {policy.max_length} residues", rec.id, rec.line)
            continue
        report.n_used += 1
        yield SeqRecord(rec.id, seq, rec.description)
