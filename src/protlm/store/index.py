"""`protlm corpus index`: the last step of a corpus store. Checks that every shard is present and current,
then writes the global arrays (lengths, held-out keys, shard starts, duplicates across shards) and store.json,
each atomically, store.json last. Memory: 8 bytes per record for the id hashes, 8 for lengths and keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from protlm.errors import ProtlmError
from protlm.io import SkipReport
from protlm.io.atomic import atomic_open, write_json
from protlm.io.structured import read_json, read_json_object
from protlm.store.format import FORMAT, VERSION, read_shard_meta, shard_name


def _chunk_count(out: Path, meta: dict) -> int:
    parts = sorted((out / "parts").glob("part-*-of-*.json")) if (out / "parts").is_dir() else []
    if not parts:
        raise ProtlmError(f"{out}: no prepare run has finished its pass yet (no parts/*.json)")
    counts = {read_json(p)["chunks"] for p in parts}
    if len(counts) != 1:
        raise ProtlmError(f"{out}: prepare runs disagree on the number of chunks ({sorted(counts)}): inputs changed")
    return counts.pop()


def index_store(out: str | Path) -> dict:
    """Check every shard and write the global arrays and store.json (atomically, store.json last)."""
    out = Path(out)
    if not (out / "prepare.json").is_file():
        raise ProtlmError(f"{out}: not a corpus store (no prepare.json)")
    meta = read_json_object(out / "prepare.json")
    n_chunks = _chunk_count(out, meta)
    shard_metas = []
    for k in range(n_chunks):
        m = read_shard_meta(out, k)
        if m is None or m.get("fingerprint") != meta:
            missing = [
                shard_name(j) for j in range(n_chunks) if (read_shard_meta(out, j) or {}).get("fingerprint") != meta
            ]
            raise ProtlmError(f"{out}: {len(missing)} of {n_chunks} shards missing or stale (first: {missing[0]}); "
                              "run the missing `protlm corpus prepare --shard I/N` parts again")  # fmt: skip
        shard_metas.append(m)
    counts = np.array([m["records"] for m in shard_metas], dtype=np.int64)
    starts = np.zeros(n_chunks + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    lengths = np.empty(int(starts[-1]), dtype=np.int32)
    holdout = np.empty(int(starts[-1]), dtype=np.uint32)
    hashes = np.empty(int(starts[-1]), dtype=np.uint64)
    for k in range(n_chunks):
        d = out / "shards" / shard_name(k)
        lo, hi = starts[k], starts[k + 1]
        lengths[lo:hi] = np.diff(np.load(d / "offsets.npy", allow_pickle=False))
        holdout[lo:hi] = np.load(d / "holdout.npy", allow_pickle=False)
        hashes[lo:hi] = np.load(d / "id_hash.npy", allow_pickle=False)
    duplicates = _duplicates(out, hashes, starts)
    del hashes
    report = SkipReport("")
    for m in shard_metas:
        report.merge(SkipReport.from_dict("", m["skip_report"]))
    if len(duplicates):
        report.skipped["duplicate id"] += len(duplicates)
        report.n_used -= len(duplicates)
    for name, arr in (("lengths", lengths), ("holdout", holdout), ("starts", starts), ("duplicates", duplicates)):
        with atomic_open(out / f"{name}.npy", "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
    store = {"format": FORMAT, "version": VERSION, "fingerprint": meta, "shards": n_chunks,
             "records": int(starts[-1]), "usable_records": int(starts[-1]) - len(duplicates),
             "tokens": int(sum(m["tokens"] for m in shard_metas)),
             "residues": int(sum(m["residues"] for m in shard_metas)),
             "skip_report": report.as_dict()}  # fmt: skip
    write_json(out / "store.json", store)
    return store


def _duplicates(out: Path, hashes: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Global indices whose id equals an earlier record's (across shards: within one, the worker
    already skipped them). Records with equal 64-bit hashes are compared on their id bytes, so a
    hash collision never drops a record."""
    from protlm.store.format import ShardMaps

    order = np.argsort(hashes, kind="stable")  # equal hashes stay in corpus order: the first is kept
    sorted_h = hashes[order]
    cuts = np.flatnonzero(sorted_h[1:] != sorted_h[:-1]) + 1
    run_start, run_end = np.r_[0, cuts], np.r_[cuts, len(hashes)]
    multi = run_end - run_start > 1
    maps, dup = ShardMaps(out, starts), []
    for s, e in zip(run_start[multi], run_end[multi], strict=True):  # only runs of equal hashes: rare
        first: dict[str, int] = {}
        for j in order[s:e]:
            pid = maps.id(int(j))
            if pid in first:
                dup.append(int(j))
            else:
                first[pid] = int(j)
    return np.array(sorted(dup), dtype=np.int64)
