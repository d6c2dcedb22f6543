"""Benchmark: how the corpus store's cost grows with the corpus.

Synthetic corpora of real sequences: Swiss-Prot 2014 (../shared/data) repeated with 3 random point
substitutions per copy (new ids `<acc>_c<k>`), at each requested size. For each size:

- `protlm corpus prepare` at 1 and 2 workers: wall time, residues/s, peak RSS of the reader process
  and of the largest worker (each run a fresh child process; getrusage);
- `protlm pretrain --corpus STORE --max-steps 1` with `eval_fraction: 0` (tiny preset, 8,192 tokens per
  batch): wall time from launch to exit (imports, opening the store, planning the epoch, building the
  model, one step, saving), the step's own time from metrics.jsonl, and peak RSS;
- the data path alone, in a fresh process: peak RSS after loading the tokenizer, then after opening the
  store and planning epoch 0 (`build_data` + `epoch_batches`), and the seconds that took.

    .venv/bin/python bench/corpus_scale.py --sizes 400000,2000000 --workdir /tmp/corpus_bench

protlm's default tokenizer (residue BPE, 10,261 tokens) is trained on SCL2205 into the workdir unless --tokenizer is given.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "swissprot2014.fasta.gz"
AMINO = "ACDEFGHIKLMNPQRSTVWY"


def make_corpus(path: Path, n: int, seed: int = 0) -> int:
    """Write n records (Swiss-Prot, then copies with 3 substitutions each); returns residues written."""
    from protlm.io import iter_fasta

    rng = random.Random(seed)
    residues = written = 0
    with open(path, "w") as out:
        copy = 0
        while written < n:
            for rec in iter_fasta(SHARED):
                seq = rec.seq
                if copy:
                    s = list(seq)
                    for p in rng.sample(range(len(s)), min(3, len(s))):
                        s[p] = rng.choice(AMINO)
                    seq = "".join(s)
                out.write(f">{rec.id}_c{copy}\n{seq}\n")
                residues += len(seq)
                written += 1
                if written == n:
                    break
            copy += 1
    return residues


def timed(cmd: list[str], env: dict | None = None) -> dict:
    """Run `cmd` as a child of a fresh wrapper: wall time, and the peak RSS (MB) of the largest process
    among the command and its workers (getrusage RUSAGE_CHILDREN in the wrapper)."""
    script = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter(); p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "dt = time.perf_counter() - t\n"
        "print(json.dumps({'rc': p.returncode, 'wall_s': dt, 'stderr': p.stderr[-1500:],"
        " 'rss_children_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n"
    )
    wrapper = subprocess.run([sys.executable, "-c", script, *cmd], capture_output=True, text=True,
                             env={**os.environ, **(env or {})})  # fmt: skip
    return json.loads(wrapper.stdout)


def prepare_cmd(corpus: Path, tok: Path, out: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "protlm", "corpus", "prepare", str(corpus), "--tokenizer", str(tok),
            "--out", str(out), "--workers", str(workers)]  # fmt: skip


def data_path_rss(store: str, tokenizer: str, cache: str) -> None:
    """In this (fresh) process: peak RSS before and after opening the store and planning epoch 0."""
    import resource

    from protlm.tokenization import load_tokenizer
    from protlm.train.config import PretrainConfig
    from protlm.train.pretrain import build_data

    def rss() -> int:
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    cfg = PretrainConfig(tokenizer=tokenizer, corpus=store, max_steps=1, out="/tmp/unused", cache_dir=cache)
    tok = load_tokenizer(tokenizer)
    before = rss()
    t = time.perf_counter()
    data, _, _ = build_data(cfg, tok, 512, lambda s: None)
    plan = data.epoch_batches(0, 8192)
    print(json.dumps({"before_mb": before, "after_mb": rss(), "seconds": round(time.perf_counter() - t, 2),
                      "batches": len(plan)}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="400000,2000000")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--tokenizer", type=Path)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/corpus_bench"))
    ap.add_argument("--pretrain-only", action="store_true", help="reuse the stores of an earlier run")
    ap.add_argument("--data-path-rss", nargs=3, metavar=("STORE", "TOKENIZER", "CACHE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.data_path_rss:
        return data_path_rss(*args.data_path_rss)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    tok = args.tokenizer or work / "tok10k"
    if not (tok / "tokenizer.json").is_file():
        subprocess.run([sys.executable, "-m", "protlm", "tokenizer", "train", "--out", str(tok)], check=True)
    results = []
    no_eval = work / "no_eval.yaml"
    no_eval.write_text("eval_fraction: 0.0\n")  # no held-out pass at step 0: time the start-up and one step
    for n in (int(s) for s in args.sizes.split(",")):
        corpus = work / f"corpus_{n}.fasta"
        meta = work / f"corpus_{n}.json"
        if not meta.is_file():
            t = time.perf_counter()
            residues = make_corpus(corpus, n)
            meta.write_text(json.dumps({"residues": residues, "make_s": time.perf_counter() - t}))
        residues = json.loads(meta.read_text())["residues"]
        row = {"sequences": n, "residues": residues}
        for w in () if args.pretrain_only else (int(x) for x in args.workers.split(",")):
            out = work / f"store_{n}_w{w}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            r = timed(prepare_cmd(corpus, tok, out, w))
            assert r["rc"] == 0, r["stderr"]
            row[f"prepare_w{w}"] = {"wall_s": round(r["wall_s"], 1), "residues_per_s": round(residues / r["wall_s"]),
                                    "peak_rss_mb": round(r["rss_children_mb"])}  # fmt: skip
            print(json.dumps({n: row}), flush=True)
        store = work / f"store_{n}_w{max(int(x) for x in args.workers.split(','))}"
        run = work / f"run_{n}"
        subprocess.run(["rm", "-rf", str(run)], check=True)
        cmd = [sys.executable, "-m", "protlm", "pretrain", "--corpus", str(store), "--tokenizer", str(tok),
               "--model", "tiny", "--max-steps", "1", "--tokens-per-batch", "8192", "--out", str(run),
               "--precision", "fp32", "--config", str(no_eval), "--cache-dir", str(work / "cache")]  # fmt: skip
        r = timed(cmd)
        assert r["rc"] == 0, r["stderr"]
        steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        step_s = next(s["elapsed_s"] for s in steps if "loss" in s)
        row["pretrain_1_step"] = {"wall_s": round(r["wall_s"], 1), "step_s": round(step_s, 2),
                                  "peak_rss_mb": round(r["rss_children_mb"])}  # fmt: skip
        dp = subprocess.run([sys.executable, __file__, "--data-path-rss", str(store), str(tok), str(work / "cache")],
                            capture_output=True, text=True, check=True)  # fmt: skip
        row["data_path"] = json.loads(dp.stdout.strip().splitlines()[-1])
        results.append(row)
        print(json.dumps({n: row}), flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
