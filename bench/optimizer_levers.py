"""Benchmark: the AdamW implementations torch offers (for-loop, foreach, fused) on the `esm-size` RoBERTa's
parameters, one optimizer step timed alone, alternating implementations round by round (the machine is
noisy), plus the share of a full training step (forward + backward + step at protlm's batch) it takes.

    .venv/bin/python bench/optimizer_levers.py --rounds 30
"""

from __future__ import annotations

import argparse
import time

import torch

from protlm.models import build_mlm
from protlm.tokenization import load_tokenizer

IMPLS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="esm-size")
    ap.add_argument("--tokenizer", default="tests/data/tokenizer_bpe300")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--batch", default="32x256", help="Full-step batch: sequences x tokens.")
    args = ap.parse_args()
    torch.manual_seed(0)
    tok = load_tokenizer(args.tokenizer)
    model = build_mlm(args.preset, tok, seed=0)
    params = [p for p in model.parameters() if p.requires_grad]
    n = sum(p.numel() for p in params)
    opts = {}
    for name, kw in IMPLS.items():
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        opts[name] = torch.optim.AdamW(params, lr=1e-4, **kw)
        opts[name].step()  # state allocated
    times = {name: [] for name in IMPLS}
    for _ in range(args.rounds):
        for name, opt in opts.items():
            t = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - t)
    b, t = map(int, args.batch.split("x"))
    ids = torch.randint(5, len(tok.hf), (b, t))
    step = []
    for _ in range(3):
        t0 = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        step.append(time.perf_counter() - t0)
    fwd_bwd = min(step)
    print(f"{args.preset}: {n / 1e6:.1f} M parameters, {torch.get_num_threads()} threads; forward + backward of "
          f"{b} x {t} tokens: {fwd_bwd * 1e3:.0f} ms")  # fmt: skip
    print("| AdamW | step ms (median) | x for-loop | share of a full step |\n|---|---:|---:|---:|")
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    for name, m in med.items():
        print(f"| {name} | {m * 1e3:.1f} | {med['for-loop'] / m:.2f} | {100 * m / (fwd_bwd + m):.1f}% |")


if __name__ == "__main__":
    main()
