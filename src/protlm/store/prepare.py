"""`protlm corpus prepare`: any corpus + a tokenizer -> a sharded, memory-mappable store (the inputs and
their fingerprint are in `store/inputs.py`, the final index step in `store/index.py`).

Stages: one reader streams the inputs' raw records in order and cuts them into chunks of
`shard_size` records; chunk k becomes shard k. Worker processes validate (the one `ResiduePolicy`),
tokenize and write each shard, renamed into place when complete. A shard is a pure function of
(inputs, chunk k, tokenizer, policy), so the store is byte-identical whatever the worker count, and
a rerun after `kill -9` keeps the finished shards and redoes only the rest.

Across machines, `--shard I/N` makes a run write only the chunks k with k % N == I (each run still
reads the inputs to find chunk boundaries, which costs a fraction of tokenizing them). When all N
runs have finished, `protlm corpus index STORE` checks that every shard is present and writes the
index: global lengths, held-out keys, duplicates across shards, and store.json.

Memory: the reader holds at most 2 x workers chunks in flight.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import shutil
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np

from protlm.errors import InputError, ProtlmError
from protlm.hashing import holdout_keys
from protlm.io import ResiduePolicy, SkipReport
from protlm.io.atomic import refuse_links, write_json
from protlm.io.lock import build_lock
from protlm.io.structured import read_json_object
from protlm.io.tokenizer_json import rust_guard, tokenizer_file
from protlm.store.format import (
    read_shard_meta,
    shard_name,
    write_shard,
)
from protlm.store.index import index_store
from protlm.store.inputs import Inputs, fingerprint, tokenizer_fingerprint

DEFAULT_SHARD_SIZE = 100_000


# ----------------------------------------------------------------------------- workers

_WORKER: dict = {}


def _init_worker(tokenizer_json: str, where: str = "tokenizer") -> None:
    """`tokenizer_json` is the text `tokenizer_fingerprint` checked (`io.tokenizer_json`); `where` names
    its file in errors."""
    os.environ["RAYON_NUM_THREADS"] = "1"  # one core per worker: `--workers` is the parallelism
    _die_with_parent()
    from tokenizers import Tokenizer

    _WORKER["tok"] = Tokenizer.from_str(tokenizer_json)
    _WORKER["where"] = where


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the preparing process dies (kill -9, OOM killer), so no
    orphan goes on tokenizing beside a resumed run. Elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _id_hashes(ids: list[str]) -> np.ndarray:
    """64-bit hashes of ids (blake2b), for the index step's duplicate check."""
    return np.frombuffer(b"".join(hashlib.blake2b(i.encode(), digest_size=8).digest() for i in ids), dtype="<u8")


def _tokenize(seqs: list[str], dtype, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, offsets) of `seqs`. Encodings are turned into arrays `batch` at a time: an HF
    `Encoding` keeps token strings and offsets besides the ids (~100 bytes a token), so a whole
    chunk of them would cost gigabytes."""
    tok = _WORKER["tok"]
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # the same ids, without char offsets
    parts, lengths = [], np.zeros(len(seqs), dtype=np.int64)
    for i in range(0, len(seqs), batch):
        encs = encode(seqs[i : i + batch], add_special_tokens=False)
        for j, e in enumerate(encs):
            lengths[i + j] = len(e.ids)
            parts.append(np.asarray(e.ids, dtype=dtype))
        del encs
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return (np.concatenate(parts) if parts else np.zeros(0, dtype)), offsets


def build_shard(root: str, k: int, chunk: list[tuple[str, str, int, str | None]], policy: ResiduePolicy, meta: dict,
                vocab: int) -> dict:  # fmt: skip
    """Validate, tokenize and write shard k; returns its metadata (or {'error': message})."""
    report = SkipReport("")
    ids, seqs, seen = [], [], set()
    for source, pid, line, seq in chunk:
        report.n_read += 1
        if pid in seen:
            report.skip("duplicate id", pid, line)
            continue
        seen.add(pid)
        if seq is None:  # cut short by the reader: over the length limit
            report.skip(f"longer than {policy.max_length} residues", pid, line)
            continue
        try:
            seq = policy.clean(raw := seq)
        except ValueError as e:
            return {"error": str(InputError(source, str(e), line=line, record=pid))}
        if not seq:
            report.skip("empty sequence", pid, line)
            continue
        if policy.max_length is not None and len(seq) > policy.max_length:
            report.skip(f"longer than {policy.max_length} residues", pid, line)
            continue
        report.note(raw, pid, line)
        report.n_used += 1
        ids.append(pid)
        seqs.append(seq)
    try:
        with rust_guard(_WORKER.get("where", "tokenizer")):  # a panic: one error line, not the hook's
            tokens, offsets = _tokenize(seqs, np.uint16 if vocab <= np.iinfo(np.uint16).max else np.int32)
    except ProtlmError as e:
        return {"error": str(e)}
    id_raw = [i.encode() for i in ids]
    id_offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in id_raw], out=id_offsets[1:])
    arrays = {
        "tokens": tokens, "offsets": offsets,
        "residues": np.fromiter((len(s) for s in seqs), dtype=np.int32, count=len(seqs)),
        "holdout": holdout_keys(ids),
        "id_hash": _id_hashes(ids), "id_bytes": np.frombuffer(b"".join(id_raw), dtype=np.uint8),
        "id_offsets": id_offsets,
    }  # fmt: skip
    shard_meta = {"index": k, "records_read": report.n_read, "records": len(ids), "tokens": int(offsets[-1]),
                  "residues": int(arrays["residues"].sum()), "skip_report": report.as_dict(),
                  "fingerprint": meta}  # fmt: skip
    write_shard(Path(root), k, arrays, shard_meta)
    return shard_meta


# ----------------------------------------------------------------------------- prepare


def _chunks(inputs: Inputs, size: int, keep: int | None) -> Iterator[list[tuple[str, str, int, str | None]]]:
    """Raw records in chunks of `size`; a sequence the reader cut short (over the length limit) is None."""
    chunk: list[tuple[str, str, int, str | None]] = []
    for source, r in inputs.raw_records(keep):
        chunk.append((source, r.id, r.line, None if r.truncated else r.seq))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _check_fingerprint(out: Path, meta: dict) -> None:
    """A store directory belongs to one fingerprint: another tokenizer or input is an error, never a rebuild
    (unless no shard was finished under the old one, as after an input error: then nothing is lost)."""
    f = out / "prepare.json"
    if out.exists() and not out.is_dir():
        raise ProtlmError(f"{out}: exists and is not a directory; --out names the store directory")
    shards = out / "shards"
    if f.is_file() and not (shards.is_dir() and any(not p.name.startswith(".") for p in shards.iterdir())):
        write_json(f, meta)
    elif f.is_file():
        old = read_json_object(f)
        if old != meta:
            what = [k for k in meta if old.get(k) != meta[k]]
            raise ProtlmError(f"{out}: a store prepared with different {', '.join(what)} is already there; "
                              "give another --out or delete it")  # fmt: skip
    elif out.exists() and any(out.iterdir()):
        raise ProtlmError(f"{out}: exists and is not a corpus store; give an empty or new directory")
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(f, meta)


def prepare_store(
    inputs: Inputs,
    tokenizer_dir: str | Path,
    out: str | Path,
    policy: ResiduePolicy = ResiduePolicy(),
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    shard_size: int = DEFAULT_SHARD_SIZE,
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Prepare the chunks k % N == I of `inputs` into `out` (all of them by default) and, when this run
    covers every chunk, index the store. Returns {'shards_written', 'shards_kept', 'chunks', 'indexed'}.
    Two processes preparing the same part of one store take turns: the later one keeps every shard."""
    out = Path(out)
    part = out if shard[1] == 1 else out.with_name(f"{out.name}.part-{shard[0]}-of-{shard[1]}")
    refuse_links(out, "the store")  # the part's lock checks only its own name
    with build_lock(part, log):
        return _prepare_store(inputs, tokenizer_dir, out, policy, workers, shard, shard_size, log)


def _prepare_store(inputs, tokenizer_dir, out: Path, policy, workers, shard, shard_size, log) -> dict:
    part, n_parts = shard
    if not (n_parts >= 1 and 0 <= part < n_parts):
        raise ProtlmError(f"--shard {part}/{n_parts}: give I/N with 0 <= I < N")
    if workers < 1 or shard_size < 1:
        raise ProtlmError("--workers and --shard-size must be positive")
    out = Path(out)
    tok_json, tok_sha, vocab = tokenizer_fingerprint(tokenizer_dir)
    meta = fingerprint(inputs, tok_sha, vocab, policy, shard_size)
    _check_fingerprint(out, meta)
    done = read_json_object(out / "store.json") if (out / "store.json").is_file() else {}
    if n_parts == 1 and done.get("fingerprint") == meta:  # finished already (by an earlier or a concurrent run)
        return {"shards_written": 0, "shards_kept": done["shards"], "chunks": done["shards"], "indexed": True,
                "index": done}  # fmt: skip
    for tmp in (out / "shards").glob(".*.tmp-*") if (out / "shards").is_dir() else ():
        shutil.rmtree(tmp, ignore_errors=True)  # half-written shards of a killed run never count
    written = kept = chunks = 0
    # fork where it exists: workers only tokenize (no torch), and spawn would re-import a caller's script
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(tok_json, str(tokenizer_file(tokenizer_dir)))
    ) as pool:
        pending: deque[Future] = deque()
        for k, chunk in enumerate(_chunks(inputs, shard_size, policy.keep())):
            chunks += 1
            if k % n_parts != part:
                continue
            done = read_shard_meta(out, k)
            if done is not None and done.get("fingerprint") == meta:
                kept += 1
                continue
            pending.append(pool.submit(build_shard, str(out), k, chunk, policy, meta, vocab))
            while len(pending) >= 2 * workers:
                written += _collect(pending.popleft(), log)
        while pending:
            written += _collect(pending.popleft(), log)
    if chunks == 0:
        raise InputError(", ".join(inputs.specs), "no records (an empty file?)")
    (out / "parts").mkdir(exist_ok=True)
    write_json(out / "parts" / f"part-{part}-of-{n_parts}.json", {"chunks": chunks, "fingerprint": meta})
    result = {"chunks": chunks, "shards_written": written, "shards_kept": kept, "indexed": False}
    if n_parts == 1:
        result["index"] = index_store(out)
        result["indexed"] = True
    return result


def _collect(future: Future, log: Callable[[str], None]) -> int:
    meta = future.result()
    if "error" in meta:
        raise ProtlmError(meta["error"])
    log(f"shard {shard_name(meta['index'])}: {meta['records']:,} records, {meta['tokens']:,} tokens")
    return 1


# ----------------------------------------------------------------------------- index


def ensure_store(
    spec: str,
    tokenizer_dir: str | Path,
    policy: ResiduePolicy,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> Path:
    """The store for a corpus spec: a store directory as given; a file (or scl2205) prepared once
    into `cache_dir/store-<key>`, the key a hash of the fingerprint (tokenizer, policy, and each
    input's path, size and modification time: start-up never reads the corpus to decide)."""
    from protlm.store.format import cache_path, is_store

    if Path(spec).is_dir() and is_store(spec):
        return Path(spec)
    inputs = Inputs.expand([spec])
    _, sha, vocab = tokenizer_fingerprint(tokenizer_dir)
    path = cache_path("store", fingerprint(inputs, sha, vocab, policy, DEFAULT_SHARD_SIZE), cache_dir)
    if not (path / "store.json").is_file():
        log(f"preparing {spec} into the corpus store {path} (once)")
        workers = workers or max(1, min(4, os.cpu_count() or 1))
        prepare_store(inputs, tokenizer_dir, path, policy, workers=workers, log=log)
    return path


def parse_shard(text: str | None) -> tuple[int, int]:
    """'I/N' -> (I, N)."""
    if text is None:
        return 0, 1
    i, slash, n = text.partition("/")
    if not slash or not i.strip().isdigit() or not n.strip().isdigit():
        raise ProtlmError(f"--shard {text!r}: use I/N, e.g. 0/8 (part I of N, counting from 0)")
    return int(i), int(n)


__all__ = ["DEFAULT_SHARD_SIZE", "ensure_store", "parse_shard", "prepare_store"]
