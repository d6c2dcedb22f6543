"""Kill commands at random moments while they write; count partial outputs (the goal: none).

Each round starts one command in its own process, waits until it has begun writing (a temporary file
beside the output, or shards of a store), SIGKILLs it at a random moment of what is left of a reference
run's time, then checks what is left under the final output name: nothing, or a complete output (the
kill came after the rename); never a partial one. Commands: `embed` to Parquet, NPZ and HDF5, and
`corpus prepare` (a store is complete when its store.json is there, and then it opens and holds
every record).

    .venv/bin/python bench/kill_outputs.py --rounds 10
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "data" / "protlm_0.1" / "mlm"
TOK = ROOT / "tests" / "data" / "tokenizer_bpe300"


def complete(out: Path, n: int) -> bool:
    """Is `out` a whole output of n records?"""
    import numpy as np

    if out.name == "store":
        from protlm.store import TokenStore

        return len(TokenStore(out)) == n
    if out.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(out).metadata.num_rows == n
    if out.suffix == ".npz":
        return len([k for k in np.load(out).files if not k.startswith("_")]) == n
    import h5py

    with h5py.File(out) as f:
        return len(f) == n


def writing(out: Path) -> bool:
    """Is an output under way: a temporary sibling (files), or shards written but no store.json (a store)?"""
    if out.name == "store":
        return (out / "shards").is_dir() and not (out / "store.json").exists()
    return any(out.parent.glob(f".{out.name}.tmp-*"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10, help="Kills per command.")
    ap.add_argument("--records", type=int, default=3000)
    args = ap.parse_args()
    import numpy as np

    rng = np.random.default_rng(0)
    pick = random.Random(0)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fasta = work / "in.fa"
        letters = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)
        fasta.write_text("".join(f">S{i}\n{letters[rng.integers(0, 20, 400)].tobytes().decode()}\n"
                                 for i in range(args.records)))  # fmt: skip
        commands = {
            f"embed -> {s}": (["embed", fasta, "--model", MODEL, "--precision", "fp32", "--out"], work / f"e{s}")
            for s in (".parquet", ".npz", ".h5")
        } | {"corpus prepare": (["corpus", "prepare", fasta, "--tokenizer", TOK, "--shard-size", "200", "--out"],
                                work / "store")}  # fmt: skip
        totals = {"kills": 0, "partial": 0, "complete": 0, "absent": 0, "mid-write": 0}
        for name, (argv, out) in commands.items():
            cmd = [sys.executable, "-m", "protlm", *map(str, argv), str(out)]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            span = time.perf_counter() - t0
            counts = {"partial": 0, "complete": 0, "absent": 0, "mid-write": 0}
            for _ in range(args.rounds):
                shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
                start = time.perf_counter()
                while not writing(out) and time.perf_counter() - start < span:  # wait for the writing phase
                    time.sleep(0.005)
                time.sleep(pick.uniform(0.0, 0.5) * (span - (time.perf_counter() - start)))
                mid = writing(out)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                counts["mid-write"] += mid
                final = out / "store.json" if name == "corpus prepare" else out
                state = "absent" if not final.exists() else "complete" if complete(out, args.records) else "partial"
                counts[state] += 1
            for k, v in counts.items():
                totals[k] += v
            totals["kills"] += args.rounds
            print(f"{name}: run {span:.1f}s, {args.rounds} kills: {counts}", file=sys.stderr)
            proc = subprocess.run(cmd, capture_output=True, env=env)  # a rerun after the last kill finishes
            assert proc.returncode == 0 and complete(out, args.records), proc.stderr[-500:]
        print(f"{totals['kills']} kills at random times, {totals['mid-write']} of them while an output was being "
              f"written: {totals['partial']} partial outputs, "
              f"{totals['complete']} complete (killed after the rename), {totals['absent']} absent; "
              "every rerun finished")  # fmt: skip


if __name__ == "__main__":
    main()
