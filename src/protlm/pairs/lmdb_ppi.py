"""PEER / TAPE-style PPI LMDB (HumanPPI, YeastPPI): fields `primary_1`, `primary_2`, `interaction`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from protlm.errors import InputError
from protlm.io import ResiduePolicy, SkipReport, looks_nucleotide
from protlm.io.lmdb_records import iter_lmdb
from protlm.pairs.table import Pair


def read_ppi_lmdb(
    path: str | Path, split: str = "train", policy: ResiduePolicy = ResiduePolicy(), report: SkipReport | None = None
) -> Iterator[Pair]:
    """Pairs from a PPI LMDB; ids are `<file>:<index>:a|b` unless the record carries names."""
    report = report if report is not None else SkipReport(str(path))
    stem = Path(path).name
    for i, item in iter_lmdb(path):
        report.n_read += 1
        missing = [k for k in ("primary_1", "primary_2", "interaction") if k not in item]
        if missing:
            raise InputError(path, f"record lacks field(s) {', '.join(missing)}", record=str(i))
        try:
            a, b = policy.clean(str(item["primary_1"])), policy.clean(str(item["primary_2"]))
        except ValueError as e:
            raise InputError(path, str(e), record=str(i)) from None
        label = _binary(item["interaction"])
        if label is None:
            raise InputError(path, f"interaction must be 0 or 1, found {item['interaction']!r}", record=str(i))
        if not a or not b:
            report.skip("empty sequence", str(i))
            continue
        report.note(str(item["primary_1"]) if looks_nucleotide(str(item["primary_1"])) else str(item["primary_2"]),
                    str(i))  # fmt: skip
        report.n_used += 1
        yield Pair(str(item.get("id_1", f"{stem}:{i}:a")), str(item.get("id_2", f"{stem}:{i}:b")), a, b, label, split)


def _binary(value) -> int | None:
    """0 or 1 from an LMDB field (an int, bool, float, 0-d array or the string "0" / "1"); None otherwise."""
    if isinstance(value, str):
        value = value.strip()
        return int(value) if value in ("0", "1") else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number in (0.0, 1.0) else None
