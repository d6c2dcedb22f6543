"""Benchmark: `torch.compile` (inductor) of protlm's MLM objective against eager, one training step (protlm's
`train_step`: forward, backward, clipping, schedule, AdamW) on a fixed batch, alternating eager and compiled
steps after the compile (reported apart).

    .venv/bin/python bench/compile_lever.py --preset esm-size --batch 32x256 --steps 6
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from protlm.batching import MaskingVocab, mask_for_mlm
from protlm.device import make_accelerator
from protlm.models import build_mlm
from protlm.tokenization import load_tokenizer
from protlm.train.config import TrainConfig
from protlm.train.data import Batch
from protlm.train.loop import StepSetup, make_optimizer, train_step
from protlm.train.objective import MaskedLMObjective

HORIZON = 10**6  # the schedule's horizon


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="esm-size")
    ap.add_argument("--tokenizer", default="tests/data/tokenizer_bpe300")
    ap.add_argument("--batch", default="32x256")
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    tok = load_tokenizer(args.tokenizer)
    b, t = map(int, args.batch.split("x"))
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, len(tok.hf), (b, t), generator=gen)
    inputs, labels = mask_for_mlm(ids, MaskingVocab.of(tok), gen)
    attn = torch.ones_like(ids)
    base = MaskedLMObjective(build_mlm(args.preset, tok, seed=0)).train()
    runs = {"eager": base, "compiled": torch.compile(copy.deepcopy(base), dynamic=False)}
    cfg, acc = TrainConfig(max_steps=HORIZON, precision="fp32"), make_accelerator("cpu")
    setups = {k: StepSetup(m, make_optimizer(m, cfg), acc, cfg, HORIZON, None) for k, m in runs.items()}
    batch = Batch(inputs, attn, labels, int(attn.sum()))
    done = {"eager": 0, "compiled": 0}

    def step(name: str) -> float:  # protlm's own step (train_step: clipping, schedule, AdamW), on the same batch
        t0 = time.perf_counter()
        train_step(setups[name], done[name], [batch])
        done[name] += 1
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    step("compiled")
    compile_s = time.perf_counter() - t0
    times = {"eager": [], "compiled": []}
    for _ in range(args.steps):
        for name in times:
            times[name].append(step(name))
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print(f"{args.preset}, batch {b} x {t}, {torch.get_num_threads()} threads; first compiled step (compile): "
          f"{compile_s:.0f} s")  # fmt: skip
    print(f"| step | eager s | compiled s | eager / compiled |\n|---|---:|---:|---:|\n| median of {args.steps} | "
          f"{med['eager']:.2f} | {med['compiled']:.2f} | {med['eager'] / med['compiled']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
