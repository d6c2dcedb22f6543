"""Non-binding pairs drawn at random, as arrays: the one sampler of `pairs build` and pre-training.

A drawn pair must pass three rules: not a self-pair (two proteins with one id), both proteins of
one organism (STRING ids `TAXID.ENSP...`; ids without a taxon prefix form one group), and not a
known binding pair. Known pairs are sorted 64-bit keys looked up by binary search, never a set of
id strings, so a pool of 10^7 proteins and 10^8 known links costs arrays only.

(`pairs build-string` draws its negatives in SQL, out of core, by the same three rules; it also
rejects pairs linked in STRING at any score, which only the full links file knows.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def organism(pid: str) -> str:
    """STRING ids read `TAXID.ENSP...`: the organism is the prefix; other ids have none ('')."""
    head, dot, _ = pid.partition(".")
    return head if dot and head.isdigit() else ""


def pair_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Unordered pair -> one uint64 (min << 32 | max) of two non-negative codes below 2^32."""
    a, b = np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)
    return (np.minimum(a, b) << np.uint64(32)) | np.maximum(a, b)


def contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Membership of `keys` in a sorted array, by binary search."""
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


def _strings(values) -> np.ndarray:
    """A 1-d object array of `values`' strings (never a fixed-width `<U` array)."""
    values = [str(v) for v in values]
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


@dataclass
class NegativePool:
    """The proteins non-binding pairs are drawn from, and what the rules need to know of them."""

    members: np.ndarray  # (n,) protein indices in the caller's token source (or any labels)
    codes: np.ndarray  # (n,) id codes below 2^32: equal ids <=> equal codes
    organisms: np.ndarray  # (n,) organism of each member (any integer code)
    known: np.ndarray  # sorted uint64 pair_keys(code, code) of known binding pairs: never drawn

    @staticmethod
    def from_ids(members: np.ndarray, ids: Sequence[str], known: Sequence[tuple[str, str]]) -> NegativePool:
        """From the members' ids (`ids[k]` of `members[k]`) and known binding pairs as id pairs."""
        # Object arrays hold references to the id strings: a fixed-width unicode array would store every id
        # at the longest one's width (n ids x 4 bytes x the longest length: gigabytes for one long id).
        names, codes = np.unique(_strings(ids), return_inverse=True)
        _, orgs = np.unique(_strings([organism(i) for i in names] or [""]), return_inverse=True)
        k = _strings([i for pair in known for i in pair]).reshape(-1, 2)
        ka, kb = np.searchsorted(names, k[:, 0]), np.searchsorted(names, k[:, 1])
        hit = (ka < len(names)) & (kb < len(names))
        hit[hit] &= (names[ka[hit]] == k[hit, 0]) & (names[kb[hit]] == k[hit, 1])
        keys = np.unique(pair_keys(ka[hit], kb[hit]))  # pairs naming a protein outside the pool can't be drawn
        return NegativePool(np.asarray(members), codes.astype(np.int64), orgs[codes].astype(np.int64), keys)

    def __len__(self) -> int:
        return len(self.members)

    def draw(
        self,
        n: int,
        rng: np.random.Generator,
        accept: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
        distinct: bool = False,
        rounds: int = 100,
    ) -> np.ndarray:
        """Up to n pairs of members `(n', 2)` passing the rules (and `accept(a, b)` on member arrays),
        2 x the missing count drawn per round. `distinct`: each unordered pair at most once."""
        out: list[np.ndarray] = []
        seen = np.zeros(0, np.uint64)
        have = 0
        for _ in range(rounds):
            need = n - have
            if need <= 0 or len(self) < 2:
                break
            pos = rng.integers(0, len(self), size=(need * 2, 2))
            a, b = pos[:, 0], pos[:, 1]
            ca, cb = self.codes[a], self.codes[b]
            ok = (ca != cb) & (self.organisms[a] == self.organisms[b])
            keys = pair_keys(ca, cb)
            ok &= ~contains(self.known, keys)
            if accept is not None:
                ok &= accept(self.members[a], self.members[b])
            if distinct:
                ok &= ~contains(seen, keys)
                first = np.zeros(len(keys), dtype=bool)
                first[np.unique(np.where(ok, keys, np.uint64(2**64 - 1)), return_index=True)[1]] = True
                ok &= first
            good = np.flatnonzero(ok)[:need]
            out.append(self.members[pos[good]])
            if distinct:
                seen = np.union1d(seen, keys[good])
            have += len(good)
        width = (0, 2)
        return np.concatenate(out).reshape(-1, 2) if out else np.zeros(width, dtype=np.asarray(self.members).dtype)
