"""Tokenize once, cache as memory-mapped arrays, never tokenize per step.

A `TokenizedSet` holds the content tokens of many proteins (no special tokens) as one flat array
plus offsets, so that batches are cut from it without touching the tokenizer again. The cache key
is a hash of the tokenizer file and of every (id, sequence) pair, so a changed corpus or tokenizer
can never be served a stale cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protlm.io.atomic import new_temp_dir
from protlm.io.structured import read_json


@dataclass
class TokenizedSet:
    """Proteins as token arrays: protein i is `tokens[offsets[i]:offsets[i+1]]`."""

    ids: list[str]
    tokens: np.ndarray  # (total_tokens,) uint16 or int32
    offsets: np.ndarray  # (n + 1,) int64
    residues: np.ndarray  # (n,) int64: sequence length in residues

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def get(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def index(self) -> dict[str, int]:
        return {pid: i for i, pid in enumerate(self.ids)}


def default_cache_dir() -> Path:
    return Path(os.environ.get("PROTLM_CACHE", Path.home() / ".cache" / "protlm"))


def _digest(tokenizer, ids: Sequence[str], seqs: Sequence[str]) -> str:
    """Cache key of (tokenizer, every id and sequence). Each field is length-prefixed, so no two
    different inputs hash the same bytes (`id\tseq\n` joins did: ['a\tMK\nb'], ['VL'] = ['a', 'b'], ['MK', 'VL'])."""
    h = hashlib.sha256(b"protlm-tokenized-v2\0")
    for field in (tokenizer.backend.to_str(), *(x for pair in zip(ids, seqs, strict=True) for x in pair)):
        data = field.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:24]


def tokenize(tokenizer, ids: Sequence[str], seqs: Sequence[str], batch_size: int = 4096) -> TokenizedSet:
    """Tokenize without special tokens, in Rust batches."""
    backend = tokenizer.backend
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max else np.int32
    chunks, lengths = [], []
    for i in range(0, len(seqs), batch_size):
        for enc in backend.encode_batch(list(seqs[i : i + batch_size]), add_special_tokens=False):
            chunks.append(np.asarray(enc.ids, dtype=dtype))
            lengths.append(len(enc.ids))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)
    residues = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    return TokenizedSet(list(ids), tokens, offsets, residues)


def cached_tokenize(
    tokenizer, ids: Sequence[str], seqs: Sequence[str], cache_dir: str | Path | None = None
) -> TokenizedSet:
    """`tokenize`, memoised on disk under `cache_dir/<hash>/` (written atomically, loaded mmap)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _digest(tokenizer, ids, seqs)
    final = root / f"tok-{key}"
    if not (final / "offsets.npy").is_file():
        ts = tokenize(tokenizer, ids, seqs)
        tmp = new_temp_dir(final)
        np.save(tmp / "tokens.npy", ts.tokens)
        np.save(tmp / "residues.npy", ts.residues)
        (tmp / "ids.json").write_text(json.dumps(ts.ids))
        np.save(tmp / "offsets.npy", ts.offsets)
        try:
            os.rename(tmp, final)
        except OSError:  # another process won the race: use its copy
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return TokenizedSet(
        read_json(final / "ids.json", limit=None),
        np.load(final / "tokens.npy", mmap_mode="r", allow_pickle=False),
        np.load(final / "offsets.npy", allow_pickle=False),
        np.load(final / "residues.npy", allow_pickle=False),
    )


class ConcatTokens:
    """Token sources one after another (a corpus store, then the proteins of pair tables): the same
    interface (len, lengths, get(i), ids[i]) with the second source's indices after the first's."""

    def __init__(self, *parts):
        self.parts = parts
        self.starts = np.cumsum([0, *(len(p) for p in parts)])
        self.lengths = np.concatenate([np.asarray(p.lengths, dtype=np.int64) for p in parts])
        self.ids = IdView(self)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def locate(self, i: int) -> tuple[int, int]:
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return k, int(i) - int(self.starts[k])

    def get(self, i: int) -> np.ndarray:
        k, j = self.locate(i)
        return self.parts[k].get(j)

    def id(self, i: int) -> str:
        k, j = self.locate(i)
        return self.parts[k].ids[j]


class IdView:
    """`source.ids[i]` for sources that look ids up one at a time (`source.id(i)`), with no list of all ids."""

    def __init__(self, source):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> str:
        return self.source.id(int(i))
