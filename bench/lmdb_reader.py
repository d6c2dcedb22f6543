"""What reading an LMDB safely costs: `iter_lmdb` (keys looked up by a child process, every record decoded
by the restricted unpickler) against the same decode on records read in this process (what protlm did
before: a damaged file could kill it with SIGBUS), and against plain `pickle.loads` (what TAPE does: it
runs any code the file names). One run, the same records, ratios printed.

    .venv/bin/python bench/lmdb_reader.py --records 20000
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import lmdb
import numpy as np

from protlm.io.lmdb_records import iter_lmdb, safe_loads


def build(path: Path, n: int) -> None:
    """A TAPE secondary-structure-like LMDB: sequence, ss3 / ss8 arrays, a mask, an id."""
    rng = np.random.default_rng(0)
    env = lmdb.open(str(path), map_size=1 << 32)
    with env.begin(write=True) as txn:
        txn.put(b"num_examples", pickle.dumps(n))
        for i in range(n):
            length = int(rng.integers(50, 500))
            record = {"id": f"P{i:06d}", "primary": "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), length)),
                      "ss3": rng.integers(0, 3, length), "ss8": rng.integers(0, 8, length),
                      "valid_mask": np.ones(length, bool), "protein_length": length}  # fmt: skip
            txn.put(str(i).encode(), pickle.dumps(record, protocol=2))
    env.close()


def in_process(path: Path, decode) -> int:
    env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)
    with env, env.begin() as txn:
        n = pickle.loads(txn.get(b"num_examples"))
        return sum(len(decode(txn.get(str(i).encode()))["primary"]) for i in range(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "ss.lmdb"
        build(db, args.records)
        runs = {
            "iter_lmdb (child process + restricted decode)": lambda: sum(len(r["primary"]) for _, r in iter_lmdb(db)),
            "in-process read + restricted decode": lambda: in_process(db, safe_loads),
            "in-process read + pickle.loads (unsafe)": lambda: in_process(db, pickle.loads),
        }
        best = {}
        for _ in range(args.repeats):  # alternate the rows so that drift lands on all of them
            for name, run in runs.items():
                t0 = time.perf_counter()
                residues = run()
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
        base = best["iter_lmdb (child process + restricted decode)"]
        print(f"{args.records:,} records, {residues:,} residues, {(db / 'data.mdb').stat().st_size / 2**20:.0f} MiB")
        for name, seconds in best.items():
            print(f"{name:48s} {seconds:7.2f} s  {args.records / seconds:9,.0f} records/s  {base / seconds:5.2f}x")


if __name__ == "__main__":
    main()
