"""Benchmark: resident memory against training step over a long pre-training run.

Runs `protlm pretrain` (tiny preset, Swiss-Prot 2014 from ../shared/data, 8,192 tokens per batch,
evaluation and checkpoints at their defaults) for --steps steps in a child process and samples its
/proc status once a second: VmRSS and RssAnon (anonymous memory: the heap, not the mapped store or
libraries), with the step reached (from metrics.jsonl). Each --env setting is one run in the same
invocation (side by side with --parallel), so the runs compare on one machine:

    .venv/bin/python bench/steady_rss.py --steps 2000 --env PROTLM_STEADY_HEAP=0 --env "" --parallel \\
        --tokenizer /tmp/corpus_bench/tok10k

Prints, per run, anonymous memory (floor / median / peak) over windows of steps, and the peak VmRSS.
`--report` reprints that table from the saved samples of an earlier invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "swissprot2014.fasta.gz"


def status_mb(pid: int) -> dict[str, float]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                out[key] = int(value.split()[0]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def last_step(metrics: Path) -> int:
    try:
        lines = metrics.read_text().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line).get("step", 0))
        except json.JSONDecodeError:
            continue
    return 0


def run(env_text: str, args) -> list[tuple[int, float, float, float]]:
    """[(step, seconds, VmRSS MB, RssAnon MB)] sampled once a second."""
    out = args.workdir / f"run_{env_text or 'default'}".replace("=", "_")
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ)
    if env_text:
        key, _, value = env_text.partition("=")
        env[key] = value
    cmd = [sys.executable, "-m", "protlm", "pretrain", "--corpus", str(args.corpus), "--tokenizer",
           str(args.tokenizer), "--model", "tiny", "--tokens-per-batch", "8192", "--max-steps", str(args.steps),
           "--precision", "fp32", "--log-every", "10", "--out", str(out), "--cache-dir", str(args.workdir / "cache")]  # fmt: skip
    log = out.with_suffix(".log")  # a file, not a pipe: an undrained pipe would block the run once full
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        samples = watch(proc, out)
    if proc.returncode:
        raise SystemExit(f"{env_text}: exit {proc.returncode}\n{log.read_text()[-2000:]}")
    (args.workdir / f"samples_{env_text or 'default'}.json".replace("=", "_")).write_text(json.dumps(samples))
    return samples


def watch(proc: subprocess.Popen, out: Path) -> list[tuple[int, float, float, float]]:
    samples, t0 = [], time.perf_counter()
    while proc.poll() is None:
        mem = status_mb(proc.pid)
        if mem:
            samples.append((last_step(out / "metrics.jsonl"), time.perf_counter() - t0, mem.get("VmRSS", 0.0),
                            mem.get("RssAnon", 0.0)))  # fmt: skip
        time.sleep(1.0)
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--corpus", default=str(SHARED), help="Corpus file or store (default Swiss-Prot 2014).")
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--env", action="append", default=None, help="NAME=VALUE for one run; '' = as is.")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/steady_rss"))
    ap.add_argument("--parallel", action="store_true", help="Run the settings side by side (same load).")
    ap.add_argument("--report", action="store_true", help="Only print the table from saved samples.")
    args = ap.parse_args()
    if args.report:
        name = lambda e: args.workdir / f"samples_{e or 'default'}.json".replace("=", "_")  # noqa: E731
        return report({e: json.loads(name(e).read_text()) for e in args.env or [""]}, args.steps)
    args.workdir.mkdir(parents=True, exist_ok=True)
    settings = args.env or [""]
    if args.parallel:  # side by side: both runs see the same machine load
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(settings)) as pool:
            done = dict(zip(settings, pool.map(lambda e: run(e, args), settings), strict=True))
    else:
        done = {e: run(e, args) for e in settings}
    report(done, args.steps)


def report(done: dict[str, list], steps: int) -> None:
    """RssAnon floor / median / peak (MB) over windows of steps: a step's own working set comes and goes
    within seconds, so one sample per mark would read as noise; what accumulates shows in the floor."""
    edges = [e for e in (0, 100, 500, 1000, 1500, 2000) if e < steps] + [steps]
    windows = list(zip(edges[:-1], edges[1:], strict=True))
    print("| run | " + " | ".join(f"steps {a}-{b}" for a, b in windows) + " | peak VmRSS | wall |")
    print("|---|" + "---:|" * (len(windows) + 2))
    for env_text, samples in done.items():
        cells = []
        for a, b in windows:
            anon = sorted(s[3] for s in samples if a <= s[0] < b or (b == steps and s[0] == steps))
            cells.append(f"{anon[0]:,.0f} / {anon[len(anon) // 2]:,.0f} / {anon[-1]:,.0f}" if anon else "-")
        peak = max(s[2] for s in samples)
        print(f"| {env_text or 'default'} | " + " | ".join(cells) + f" | {peak:,.0f} | {samples[-1][1]:.0f} s |")
    print("cells: RssAnon floor / median / peak in MB over the window's once-a-second samples")


if __name__ == "__main__":
    main()
