"""Rebuild the built-in pair set shipped in src/protlm/data/ from ../shared/data.

    .venv/bin/python scripts/build_builtin_pairs.py

Positives: ../shared/data/ppi_positive_pairs.tsv.gz (4,246 curated human ligand-receptor and other
intercellular interactions from OmniPath via liana 1.10.0 and CellPhoneDB 2.1.7); sequences from
../shared/data/swissprot2014.fasta.gz (UniProt, CC BY 4.0). Strict (protein-disjoint) 80/10/10
split, one sampled negative per positive, seed 0.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from protlm.pairs import build_pairs
from protlm.pairs.build import BUILTIN

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEST = Path(__file__).resolve().parents[1] / "src" / "protlm" / "data" / BUILTIN


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report = build_pairs(
            SHARED / "ppi_positive_pairs.tsv.gz", SHARED / "swissprot2014.fasta.gz", tmp, "strict", 1.0, 0
        )
        shutil.copy(Path(tmp) / "pairs.parquet", DEST)
    print(report, file=sys.stderr)
    print(f"wrote {DEST} ({DEST.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
