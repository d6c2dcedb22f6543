"""Bench check: the training kernels do not change what is learned. `protlm pretrain` runs N steps three
times on SCL2205 with the same data order: kernels on, kernels off (plain HF SDPA + nn.Dropout), and
kernels off with another dropout seed (the yardstick for run-to-run noise; the kernels draw their
dropout masks from another stream, so on vs off can agree only within that noise).

Reported: the mean loss of each run over each window of steps, the largest on-vs-off gap against the
largest seed-vs-seed gap, the final held-out loss, and tokens/s.

    .venv/bin/python bench/loss_agreement.py --steps 200 --preset esm-size --tokens-per-batch 2048
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from protlm.train.config import PretrainConfig
from protlm.train.pretrain import pretrain


def run(out: Path, args, kernels: str, dropout_seed: int) -> dict:
    cfg = PretrainConfig(out=str(out), model=args.preset, tokenizer=args.tokenizer, corpus="scl2205:train",
                         tokens_per_batch=args.tokens_per_batch, max_steps=args.steps, warmup_steps=args.steps // 10,
                         lr=args.lr, log_every=1, eval_every=10**9, save_every=10**9, precision="fp32", seed=0,
                         kernels=kernels, max_tokens=args.max_tokens, cache_dir=str(out.parent / "cache"))  # fmt: skip
    cfg.validate()
    import protlm.train.loop as loop

    derive = loop.derive_seed
    if dropout_seed:  # another dropout stream, the same batches and masking
        loop.derive_seed = lambda *k: derive(*k, dropout_seed) if k[1] == 3 else derive(*k)
    try:
        pretrain(cfg, log=lambda m: None)
    finally:
        loop.derive_seed = derive
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "tokens_per_s" in r]
    evals = [r for r in rows if "eval_loss" in r]
    return {"loss": np.array([r["loss"] for r in train]), "tok_s": float(np.mean([r["tokens_per_s"] for r in train[1:]])),
            "eval": evals[-1]["eval_loss"] if evals else float("nan")}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--preset", default="esm-size")
    ap.add_argument("--tokenizer", default="")
    ap.add_argument("--tokens-per-batch", type=int, default=2048)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--window", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "kernels on": run(Path(tmp) / "on", args, "on", 0),
            "kernels off": run(Path(tmp) / "off", args, "off", 0),
            "kernels off, other dropout seed": run(Path(tmp) / "seed", args, "off", 1),
        }
    w = args.window
    windows = {k: r["loss"][: len(r["loss"]) // w * w].reshape(-1, w).mean(1) for k, r in runs.items()}
    print(f"| steps | {' | '.join(runs)} |\n|---|" + "---:|" * len(runs))
    for i in range(len(windows["kernels on"])):
        print(f"| {i * w + 1}-{(i + 1) * w} | " + " | ".join(f"{windows[k][i]:.4f}" for k in runs) + " |")
    print("| held-out loss (end) | " + " | ".join(f"{r['eval']:.4f}" for r in runs.values()) + " |")
    print("| tokens/s | " + " | ".join(f"{r['tok_s']:,.0f}" for r in runs.values()) + " |")
    gap = np.abs(windows["kernels on"] - windows["kernels off"]).max()
    noise = np.abs(windows["kernels off, other dropout seed"] - windows["kernels off"]).max()
    print(f"\nlargest {w}-step window gap: on vs off {gap:.4f}; seed vs seed (noise) {noise:.4f}")


if __name__ == "__main__":
    main()
