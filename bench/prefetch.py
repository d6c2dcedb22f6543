"""Benchmark: building the next batch in a background thread (`--prefetch on`) against building it in place.

Alternates `protlm pretrain --prefetch on|off` runs (same model, data, seed; fresh run directories) and
reports each setting's median steady-state tokens/s (metrics.jsonl, steps after the first 5) and the
ratio, all in one script run:

    .venv/bin/python bench/prefetch.py --tokenizer /tmp/corpus_bench/tok10k --model tiny --steps 40 --reps 2

Decides `--prefetch auto` on CPU (on only where it measures faster).

`--lever steady-heap` compares the fixed glibc mmap threshold (`protlm.heap`, on by default) with
glibc's own adjustment (`PROTLM_STEADY_HEAP=0`) the same way, with prefetch off in both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(setting: str, args, work: Path, rep: int) -> float:
    out = work / f"{setting}-{rep}"
    heap = args.lever == "steady-heap"
    env = {**os.environ, "PROTLM_STEADY_HEAP": "1" if setting == "on" or not heap else "0"}
    cmd = [sys.executable, "-m", "protlm", "pretrain", "--tokenizer", str(args.tokenizer), "--model", args.model,
           "--corpus", args.corpus, "--max-steps", str(args.steps), "--tokens-per-batch", str(args.tokens_per_batch),
           "--precision", "fp32", "--log-every", "1", "--eval-every", "100000", "--save-every", "100000",
           "--prefetch", "off" if heap else setting, "--out", str(out), "--cache-dir", str(work / "cache")]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r][5:]
    return statistics.median(speeds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--corpus", default="scl2205")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--tokens-per-batch", type=int, default=8192)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--lever", choices=("prefetch", "steady-heap"), default="prefetch")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run("off", args, work, -1)  # warm-up: prepares the corpus store in the cache
        results: dict[str, list[float]] = {"on": [], "off": []}
        for rep in range(args.reps):
            for setting in ("on", "off") if rep % 2 == 0 else ("off", "on"):
                results[setting].append(run(setting, args, work, rep))
    on, off = statistics.median(results["on"]), statistics.median(results["off"])
    print(json.dumps({"tokens_per_s": results, "median_on": round(on), "median_off": round(off),
                      "on_over_off": round(on / off, 3)}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
