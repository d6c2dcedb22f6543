"""The corpus store on disk, and its memory-mapped reader.

A store is a directory that numpy (or pyarrow, via numpy) reads without protlm:

    STORE/
      store.json              written last, by the index step: a store without it is not finished
      lengths.npy             (N,) int32   content tokens of record i (no special tokens)
      holdout.npy             (N,) uint32  hashing.holdout_key(id): held out at fraction f iff < f * 100000
      starts.npy              (S + 1,) int64  first global record index of each shard, then N
      duplicates.npy          (D,) int64   global indices whose id occurred earlier in the corpus (skipped)
      prepare.json            the fingerprint every shard must match (tokenizer, inputs, policy, shard size)
      shards/00000/           one per chunk of `shard_size` input records, renamed into place when complete
        tokens.npy            (T,) uint16 (int32 for vocabularies over 65,535)
        offsets.npy           (n + 1,) int64: record r is tokens[offsets[r]:offsets[r + 1]]
        residues.npy          (n,) int32  sequence length in residues
        holdout.npy           (n,) uint32 as above
        id_hash.npy           (n,) uint64 (for the index step's duplicate check)
        id_bytes.npy          (B,) uint8  UTF-8 ids, concatenated
        id_offsets.npy        (n + 1,) int64: id r is id_bytes[id_offsets[r]:id_offsets[r + 1]]
        shard.json            counts, this shard's skip report, the fingerprint
      parts/part-I-of-N.json  written by each `--shard I/N` run at the end of its pass (chunk count)

Global record i lives in shard s = searchsorted(starts, i, 'right') - 1 at row i - starts[s].
Opening a store reads store.json, lengths.npy and holdout.npy (8 bytes a record) and maps the rest
lazily: start-up does not grow with the corpus beyond those two arrays.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protlm.errors import InputError, ProtlmError
from protlm.hashing import HOLDOUT_SCALE
from protlm.io.atomic import new_temp_dir
from protlm.io.structured import read_json
from protlm.tokenized import IdView

FORMAT = "protlm-corpus-store"
VERSION = 2  # 2: held-out keys from protlm.hashing (md5), shared with the SQL of the STRING builder
SHARD_ARRAYS = ("tokens", "offsets", "residues", "holdout", "id_hash", "id_bytes", "id_offsets")


def shard_name(k: int) -> str:
    return f"{k:05d}"


def cache_path(kind: str, fingerprint: dict, cache_dir: str | Path | None) -> Path:
    """`cache_dir/<kind>-<key>`, the key a hash of the fingerprint: where a spec is prepared once."""
    import hashlib

    from protlm.tokenized import default_cache_dir

    key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:24]
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"{kind}-{key}"


def staging_dir(out: Path) -> Path:
    """A fresh `.NAME.tmp-PID` beside `out` to build a whole store in (a killed run's leftovers removed):
    `publish` renames it into place, so a reader sees a complete store or none."""
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = new_temp_dir(out)
    (tmp / ".work").mkdir()
    return tmp


def publish(tmp: Path, out: Path) -> None:
    shutil.rmtree(tmp / ".work", ignore_errors=True)
    if out.exists():
        out.rmdir()  # an empty directory (callers refuse anything else)
    os.replace(tmp, out)


def read_meta(meta_file: Path, fmt: str, version: int, what: str) -> dict:
    """A store's metadata JSON, checked to be `fmt` at `version`; one-line errors otherwise."""
    if not meta_file.is_file():
        raise ProtlmError(f"{meta_file.parent}: not {what} (no {meta_file.name})")
    try:
        meta = read_json(meta_file)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(meta_file, "corrupt store metadata (not JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt or meta.get("version") != version:
        found = (meta.get("format"), meta.get("version")) if isinstance(meta, dict) else (None, None)
        raise InputError(meta_file, f"not a {fmt} version {version} (found {found[0]!r} version {found[1]!r})")
    return meta


def write_shard(root: Path, k: int, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write shard k under a temporary name and rename it into place: a reader (or a resumed run)
    sees a complete shard or none."""
    final = root / "shards" / shard_name(k)
    tmp = new_temp_dir(final)
    for name in SHARD_ARRAYS:
        np.save(tmp / f"{name}.npy", arrays[name], allow_pickle=False)
    (tmp / "shard.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)  # a complete shard of another fingerprint (checked by the caller)
    os.replace(tmp, final)


def read_shard_meta(root: Path, k: int) -> dict | None:
    """shard.json of a complete shard k, or None when it is absent."""
    f = root / "shards" / shard_name(k) / "shard.json"
    if not f.is_file():
        return None
    try:
        return read_json(f)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f, "corrupt shard metadata (not JSON): delete the shard and prepare again") from None


def is_store(path: str | Path) -> bool:
    return (Path(path) / "store.json").is_file() or (Path(path) / "prepare.json").is_file()


def _load(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(path, "missing: the store is incomplete or damaged; prepare it again") from None
    except (ValueError, OSError) as e:
        raise InputError(path, f"unreadable array ({e}): the store is damaged; prepare it again") from None


@dataclass
class _Shard:
    tokens: np.ndarray
    offsets: np.ndarray
    id_bytes: np.ndarray
    id_offsets: np.ndarray


class ShardMaps:
    """Global record index -> (memory-mapped shard, row); shards are opened on first use."""

    def __init__(self, root: Path, starts: np.ndarray):
        self.root, self.starts, self._open = root, starts, {}

    def __len__(self) -> int:
        return int(self.starts[-1])

    def shard(self, s: int) -> _Shard:
        if s not in self._open:
            d = self.root / "shards" / shard_name(s)
            sh = _Shard(*(_load(d / f"{n}.npy", mmap=True) for n in ("tokens", "offsets", "id_bytes", "id_offsets")))
            if len(sh.offsets) != int(self.starts[s + 1] - self.starts[s]) + 1 or int(sh.offsets[-1]) != len(sh.tokens):
                raise InputError(d / "offsets.npy", "does not match the store index: shard damaged; prepare again")
            self._open[s] = sh
        return self._open[s]

    def locate(self, i: int) -> tuple[_Shard, int]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        s = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.shard(s), i - int(self.starts[s])

    def id(self, i: int) -> str:
        sh, row = self.locate(int(i))
        return bytes(sh.id_bytes[sh.id_offsets[row] : sh.id_offsets[row + 1]]).decode()


class TokenStore:
    """A prepared corpus, memory-mapped: the `TokenizedSet` interface (len, lengths, get, ids[i])."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "store.json").is_file() and is_store(self.path):
            raise ProtlmError(f"{self.path}: not a finished corpus store (no store.json) (prepared but not "
                              "indexed: run `protlm corpus index`)")  # fmt: skip
        self.meta = read_meta(self.path / "store.json", FORMAT, VERSION, "a finished corpus store")
        self.lengths = _load(self.path / "lengths.npy")
        self.holdout = _load(self.path / "holdout.npy", mmap=True)
        self.starts = _load(self.path / "starts.npy")
        self.duplicates = _load(self.path / "duplicates.npy")
        n = int(self.meta["records"])
        if len(self.lengths) != n or len(self.holdout) != n or int(self.starts[-1]) != n:
            raise InputError(self.path / "lengths.npy", f"does not match store.json ({n:,} records): store damaged")
        self.maps = ShardMaps(self.path, self.starts)
        self.ids = IdView(self.maps)  # ids read from the memory-mapped id blobs

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def tokenizer_sha256(self) -> str:
        return self.meta["fingerprint"]["tokenizer_sha256"]

    def get(self, i: int) -> np.ndarray:
        """Content tokens of record i (a view into the memory-mapped shard)."""
        sh, row = self.maps.locate(int(i))
        return sh.tokens[sh.offsets[row] : sh.offsets[row + 1]]

    def usable(self) -> np.ndarray:
        """(N,) bool: records that are not later duplicates of an earlier id."""
        keep = np.ones(len(self), dtype=bool)
        keep[self.duplicates] = False
        return keep

    def heldout(self, fraction: float) -> np.ndarray:
        """(N,) bool: the records held out at `fraction` (the same ids a file corpus holds out)."""
        return np.asarray(self.holdout) < fraction * HOLDOUT_SCALE
