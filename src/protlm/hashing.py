"""One hash for deterministic data assignment: pair splits, pre-training's held-out set, corpus stores.

`unit(key, salt)` maps a string to [0, 1): the first 8 bytes of md5(f"{salt}:{key}") read as a
little-endian integer, over 2^64. `sql_unit` is the same number as a DuckDB expression
(`md5_number_upper`), so the STRING builder's SQL splits and Python's agree protein for protein
(tested). It depends only on the key, never on file order or batch composition. md5 serves spread
here, not security.

(Downstream tasks' own group splits, `tasks.data.stable_unit`, keep their recorded hash: changing it
would move every split the benchmark tables were measured on.)
"""

from __future__ import annotations

import hashlib

import numpy as np

HOLDOUT_SALT = "eval"
HOLDOUT_SCALE = 100_000
SPLITS = ("train", "dev", "test")


def unit(key: str, salt: str | int) -> float:
    """A number in [0, 1) that depends only on (key, salt)."""
    return int.from_bytes(hashlib.md5(f"{salt}:{key}".encode()).digest()[:8], "little") / 2**64


def sql_unit(key_sql: str, salt_param: str) -> str:
    """DuckDB expression equal to `unit(key, salt)`: `key_sql` an expression of trusted column names,
    `salt_param` the name of a bound VARCHAR parameter holding the salt."""
    return f"(md5_number_upper(${salt_param} || ':' || {key_sql}) / 18446744073709551616.0)"


def bucket(u: float, fractions: tuple[float, float, float]) -> str:
    """train / dev / test for a unit value under cumulative `fractions`."""
    return "train" if u < fractions[0] else ("dev" if u < fractions[0] + fractions[1] else "test")


def holdout_key(pid: str) -> int:
    """floor(unit(id, "eval") * 100000): a protein is held out at fraction f iff its key < f * 100000."""
    return int(unit(pid, HOLDOUT_SALT) * HOLDOUT_SCALE)


def holdout_keys(ids) -> np.ndarray:
    return np.fromiter((holdout_key(i) for i in ids), dtype=np.uint32)


def held_out(pid: str, fraction: float) -> bool:
    """Membership of `pid` in pre-training's held-out set at `fraction` (the same in a store)."""
    return holdout_key(pid) < fraction * HOLDOUT_SCALE
