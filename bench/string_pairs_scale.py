"""Benchmark: the STRING pair builder on a links file of >= 100 million rows, bounded memory.

Builds a synthetic links file in STRING's exact format (`protein1 protein2 combined_score`,
space-separated, header, every pair listed in both directions) over real sequence ids: N Swiss-Prot
2014 accessions from ../shared/data, prefixed with the human taxon (`9606.<ACC>`), with their real
sequences as the sequence FASTA. Scores are drawn so that ~1% of pairs reach 700, close to the share
of high-confidence links in STRING's physical network. Then runs

    protlm pairs build-string --links L --sequences S --memory-limit 1GB --out OUT

in a child process and reports its peak RSS (getrusage of the child) and input rows/s. Then the
same output goes on, each stage a fresh child process with its peak RSS:

    protlm pairs prepare OUT --tokenizer T --out STORE --workers 2     (the pair store)
    protlm pretrain --no-corpus --pairs STORE --model tiny --max-steps 20 (into training)

    .venv/bin/python bench/string_pairs_scale.py --rows 100000000 --proteins 100000 --workdir /tmp/string_bench \
        --tokenizer /tmp/corpus_bench/tok10k
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from protlm.io import read_sequences, write_fasta
from protlm.io.records import SeqRecord

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "swissprot2014.fasta.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--proteins", type=int, default=100_000)
    ap.add_argument("--memory-limit", default="1GB")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/string_bench"))
    ap.add_argument("--tokenizer", type=Path, help="For the pair store and pretrain stages (skipped without).")
    args = ap.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    seqs_path, links_path = work / "sequences.fa", work / "links.txt"
    if not seqs_path.exists():
        recs = []
        for rec in read_sequences(SHARED):
            recs.append(SeqRecord(f"9606.{rec.id}", rec.seq))
            if len(recs) == args.proteins:
                break
        write_fasta(recs, seqs_path)
    if not links_path.exists():
        t0 = time.perf_counter()
        con = duckdb.connect()
        con.execute(
            f"CREATE TABLE ids AS SELECT row_number() OVER () - 1 AS k, id FROM (SELECT DISTINCT split_part(line, ' ', 1)[2:] AS id FROM read_csv('{seqs_path}', columns={{'line': 'VARCHAR'}}, header=false, delim='\\t') WHERE line LIKE '>%')"
        )
        n = con.execute("SELECT count(*) FROM ids").fetchone()[0]
        half = args.rows // 2
        con.execute(f"""
            COPY (
              WITH p AS (
                SELECT hash(i, 1) % {n} AS x, hash(i, 2) % {n} AS y,
                       CASE WHEN hash(i, 3) % 100 = 0 THEN 700 + hash(i, 4) % 300 ELSE 150 + hash(i, 4) % 549 END AS s
                FROM range({half}) t(i))
              SELECT a.id AS protein1, b.id AS protein2, s AS combined_score FROM p JOIN ids a ON a.k = p.x JOIN ids b ON b.k = p.y
              UNION ALL
              SELECT b.id, a.id, s FROM p JOIN ids a ON a.k = p.x JOIN ids b ON b.k = p.y
            ) TO '{links_path}' (FORMAT csv, DELIMITER ' ', HEADER true)""")
        print(
            f"wrote {2 * half:,} link rows over {n:,} proteins in {time.perf_counter() - t0:.0f}s ({links_path.stat().st_size / 1e9:.1f} GB)"
        )
    rows = sum(1 for _ in open(links_path, "rb")) - 1
    out = work / "pairs"
    cmd = [sys.executable, "-m", "protlm", "pairs", "build-string", "--links", str(links_path), "--sequences",
           str(seqs_path), "--out", str(out), "--memory-limit", args.memory_limit]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    dt = time.perf_counter() - t0
    if proc.returncode:
        print(proc.stderr[-3000:])
        raise SystemExit(proc.returncode)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(proc.stdout[-1500:])
    print(f"input rows {rows:,}; wall {dt:.0f}s; {rows / dt:,.0f} rows/s; peak RSS {peak_kb / 1024**2:.2f} GB "
          f"with --memory-limit {args.memory_limit}")  # fmt: skip
    if args.tokenizer:
        onward(out, args.tokenizer, work, args.memory_limit)


def onward(pairs: Path, tokenizer: Path, work: Path, memory_limit: str) -> None:
    """build-string's output -> pair store -> pretrain, each stage's wall time and peak RSS."""
    import json
    import shutil

    from corpus_scale import timed

    store, run = work / "pair_store", work / "pretrain_run"
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(run, ignore_errors=True)
    protlm = [sys.executable, "-m", "protlm"]
    prep = timed([*protlm, "pairs", "prepare", str(pairs), "--tokenizer", str(tokenizer), "--out", str(store),
                  "--workers", "2", "--memory-limit", memory_limit])  # fmt: skip
    if prep["rc"]:
        raise SystemExit(prep["stderr"])
    meta = json.loads((store / "pairs.json").read_text())
    print(f"pair store: {meta['pairs']:,} pairs of {meta['proteins']:,} proteins in {prep['wall_s']:.1f}s, "
          f"peak RSS {prep['rss_children_mb']:,.0f} MB")  # fmt: skip
    train = timed([*protlm, "pretrain", "--no-corpus", "--pairs", str(store), "--tokenizer", str(tokenizer),
                   "--model", "tiny", "--max-steps", "20", "--precision", "fp32", "--out", str(run),
                   "--cache-dir", str(work / "cache")])  # fmt: skip
    if train["rc"]:
        raise SystemExit(train["stderr"])
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    print(f"pretrain on the pair store: 20 steps in {train['wall_s']:.1f}s (launch to exit), "
          f"peak RSS {train['rss_children_mb']:,.0f} MB; last loss {steps[-1].get('loss')}")  # fmt: skip


if __name__ == "__main__":
    main()
