"""PEER / TAPE-style PPI LMDB (HumanPPI, YeastPPI): fields `primary_1`, `primary_2`, `interaction`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from protlm.errors import InputError
from protlm.io import ResiduePolicy, SkipReport, looks_nucleotide
from protlm.io.lmdb_records import describe, iter_lmdb
from protlm.io.validate import check_id
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
        seq_a, seq_b = (_field(item, k, path, i) for k in ("primary_1", "primary_2"))
        try:
            a, b = policy.clean(seq_a), policy.clean(seq_b)
        except ValueError as e:
            raise InputError(path, str(e), record=str(i)) from None
        label = _binary(item["interaction"])
        if label is None:
            raise InputError(path, f"interaction must be 0 or 1, found {describe(item['interaction'])}", record=str(i))
        if not a or not b:
            report.skip("empty sequence", str(i))
            continue
        report.note(seq_a if looks_nucleotide(seq_a) else seq_b, str(i))
        report.n_used += 1
        ids = [_field(item, k, path, i) if k in item else f"{stem}:{i}:{s}" for k, s in (("id_1", "a"), ("id_2", "b"))]
        for rid in ids:
            check_id(rid, path)
        yield Pair(ids[0], ids[1], a, b, label, split)


def _field(item: dict, key: str, path, i: int) -> str:
    """A text field of a record (ids may also be small integers); never `str()` of a container."""
    value = item[key]
    if type(value) is int and value.bit_length() <= 64:
        return str(value)
    if type(value) is bytes:
        value = value.decode("latin-1")
    if type(value) is not str:
        raise InputError(path, f"{key} must be text, found {describe(value)}", record=str(i))
    return value


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
