"""The CPU proxy of issue 28: `protlm pretrain` as a user runs it, against a bare loop over the same batches.

`pretrain()` runs with its defaults (the tiny preset, SCL2205, the default BPE, 1,024 tokens per batch,
logging every 10 steps): its steps/s is read from metrics.jsonl between two log lines (after warm-up,
before the final save). The bare loop is forward / backward / AdamW / zero_grad on the same model and
the same batches, built beforehand: no batch building, clipping, schedule, logging or checkpoints. The
goal: pretrain >= 0.9x the bare loop. Rows alternate, twice; medians.

    .venv/bin/python bench/pretrain_overhead.py [--tokenizer DIR] [--steps 150] [--passes 2] [--precision auto|bf16|fp32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from protlm.models import build_mlm
from protlm.tokenization import load_tokenizer
from protlm.train.config import PretrainConfig
from protlm.train.loop import mlm_fields
from protlm.train.objective import MaskedLMObjective
from protlm.train.pretrain import build_data, pretrain

WARMUP = 20


def pretrain_steps_per_s(cfg: PretrainConfig) -> float:
    pretrain(cfg, log=lambda _m: None)
    lines = [json.loads(x) for x in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in lines if "elapsed_s" in r and "loss" in r]
    first = next(r for r in logged if r["step"] >= WARMUP)
    last = logged[-1]
    return (last["step"] - first["step"]) / (last["elapsed_s"] - first["elapsed_s"])


def bare_steps_per_s(cfg: PretrainConfig, steps: int) -> float:
    tok = load_tokenizer(cfg.tokenizer)
    model = build_mlm(cfg.model, tok, seed=cfg.seed)
    data, _, _ = build_data(cfg, tok, cfg.max_tokens or 512, lambda _m: None)
    plan = data.epoch_batches(0, cfg.tokens_per_batch)
    batches = [mlm_fields(data.make_batch(plan[k % len(plan)], torch.Generator().manual_seed(k))) for k in range(steps)]
    objective = MaskedLMObjective(model).train()
    opt = torch.optim.AdamW(objective.parameters(), lr=cfg.lr)
    for k, fields in enumerate(batches):
        if k == WARMUP:
            start = time.perf_counter()
        loss, _ = objective(**fields)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (steps - WARMUP) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", help="tokenizer dir (default: train the default BPE on SCL2205 train)")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--tokens-per-batch", type=int, default=1024)
    ap.add_argument("--kernels", default="auto", help="pretrain's --kernels (auto: on on the CPU)")
    ap.add_argument("--precision", default="auto", help="pretrain's --precision (the bare loop is fp32)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="protlm_overhead_"))
    tokenizer = args.tokenizer
    if tokenizer is None:
        from protlm.cli import main as cli

        tokenizer = str(work / "tokenizer")
        try:
            cli(["tokenizer", "train", "--out", tokenizer])
        except SystemExit:
            pass
    runs: dict[str, list[float]] = {"pretrain": [], "bare": []}
    for p in range(args.passes):
        for row in ("pretrain", "bare") if p % 2 == 0 else ("bare", "pretrain"):
            cfg = PretrainConfig(out=str(work / f"run{p}"), model="tiny", tokenizer=tokenizer, max_steps=args.steps,
                                 tokens_per_batch=args.tokens_per_batch, cache_dir=str(work / "cache"), kernels=args.kernels,
                                 precision=args.precision)  # fmt: skip
            cfg.validate()
            rate = pretrain_steps_per_s(cfg) if row == "pretrain" else bare_steps_per_s(cfg, args.steps)
            runs[row].append(rate)
            print(f"pass {p}: {row}: {rate:.2f} steps/s", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(
        f"\ntiny, {args.tokens_per_batch} tokens per batch, --precision {args.precision}, --kernels {args.kernels}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print("| run | steps/s (median) | each pass | x bare |\n|---|---:|---|---:|")
    for k in ("bare", "pretrain"):
        each = ", ".join(f"{v:.2f}" for v in runs[k])
        print(f"| {k} | {med[k]:.2f} | {each} | {med[k] / med['bare']:.2f} |")


if __name__ == "__main__":
    main()
