"""Peak memory of the readers on small files that expand: one 64 MiB FASTA line in a 65 KB .fa.gz (read with
a 1,000-residue limit), and one 256 KiB sequence repeated 2,000 times in a 24 KB dictionary-encoded Parquet.

Each read runs in its own process (peak = its VmHWM; ru_maxrss would include the parent's memory when
the child is spawned by vfork). `--baseline-src DIR` runs the same reads against
another checkout's `src/` (e.g. a worktree of an older commit) in the same run, for a ratio on one machine.

    git worktree add /tmp/old 73cba5c
    .venv/bin/python bench/reader_memory.py --baseline-src /tmp/old/src
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
CHILD = """
import sys
from protlm.io import ResiduePolicy, SkipReport, iter_table, read_sequences
path = sys.argv[1]
if path.endswith(".parquet"):
    n = sum(len(r.seq) for r in iter_table(path))
else:
    n = sum(len(r.seq) for r in read_sequences(path, ResiduePolicy(max_length=1000), SkipReport(path)))
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(n, int(hwm.split()[1]) // 1024)
"""


def peak(path: Path, src: Path) -> tuple[int, int]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True, env=env)
    residues, mib = map(int, out.stdout.split())
    return residues, mib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-src", type=Path, help="Another checkout's src/ to measure in the same run.")
    args = ap.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        fasta, table = Path(tmp) / "line.fa.gz", Path(tmp) / "dict.parquet"
        with gzip.open(fasta, "wt") as fh:
            fh.write(">huge\n" + "M" * (64 << 20) + "\n>ok\nMKTAYIAK\n")
        seq = "M" * (256 << 10)
        pq.write_table(pa.table({"id": [f"P{i}" for i in range(2000)], "sequence": [seq] * 2000}), table)
        print("| input | file size | residues read | peak RSS MiB | baseline peak RSS MiB |\n|---|---:|---:|---:|---:|")
        for path in (fasta, table):
            residues, mib = peak(path, SRC)
            base = peak(path, args.baseline_src)[1] if args.baseline_src else None
            print(f"| {path.name} | {path.stat().st_size:,} B | {residues:,} | {mib:,} | {base if base else '-'} |")


if __name__ == "__main__":
    main()
