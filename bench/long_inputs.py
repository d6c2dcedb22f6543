"""Benchmark: dense RoBERTa (SDPA, positions extended) vs HF Longformer on long inputs, one run.

For each length (1,024 / 2,048 / 4,096 tokens) and each attention path, a fresh subprocess builds
the same-size model (preset `--preset`, positions extended to the length; Longformer window
`--window`, global attention on `<s>`), then times a forward pass (inference mode) and a training
step (forward + backward + AdamW) on one sequence of that many tokens, best of `--reps`, and
reports its peak resident memory (ru_maxrss of the subprocess: one measurement per process, so
forward and training are measured in separate processes). Paths alternate to share the noise.

    .venv/bin/python bench/long_inputs.py --preset esm-size --lengths 1024,2048,4096
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(path: str, length: int, mode: str, preset: str, window: int, reps: int) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM, LongformerConfig, LongformerForMaskedLM

    from protlm.models import load_preset
    from protlm.models.backbones import global_attention_mask

    cfg = load_preset(preset)
    cfg.pop("model_type")
    cfg.update(vocab_size=10261, pad_token_id=1, max_position_embeddings=length + 2)
    torch.manual_seed(0)
    if path == "dense":
        model = AutoModelForMaskedLM.from_config(AutoConfig.for_model("roberta", **cfg), attn_implementation="sdpa")
        extra = {}
    else:
        model = LongformerForMaskedLM(LongformerConfig(**cfg, attention_window=[window] * cfg["num_hidden_layers"]))
    ids = torch.randint(5, 10261, (1, length))
    ids[0, 0], ids[0, -1] = 0, 2
    mask = torch.ones_like(ids)
    extra = {} if path == "dense" else {"global_attention_mask": global_attention_mask(ids, cls_id=0)}
    times = []
    if mode == "forward":
        model.eval()
        with torch.inference_mode():
            for _ in range(reps):
                t0 = time.perf_counter()
                model(input_ids=ids, attention_mask=mask, **extra)
                times.append(time.perf_counter() - t0)
    else:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        labels = ids.clone()
        for _ in range(reps):
            t0 = time.perf_counter()
            loss = model(input_ids=ids, attention_mask=mask, labels=labels, **extra).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            times.append(time.perf_counter() - t0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"path": path, "length": length, "mode": mode, "seconds": min(times), "peak_mb": peak_mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="esm-size")
    ap.add_argument("--lengths", default="1024,2048,4096")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--child", nargs=3, metavar=("PATH", "LENGTH", "MODE"))
    args = ap.parse_args()
    if args.child:
        path, length, mode = args.child
        print(json.dumps(child(path, int(length), mode, args.preset, args.window, args.reps)))
        return
    rows = []
    for length in (int(x) for x in args.lengths.split(",")):
        for mode in ("forward", "train"):
            for path in ("dense", "longformer"):
                cmd = [sys.executable, __file__, "--preset", args.preset, "--window", str(args.window),
                       "--reps", str(args.reps), "--child", path, str(length), mode]  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    print(f"{path} {length} {mode}: failed\n{proc.stderr[-800:]}", flush=True)
                    continue
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(
                    f"{length:>5} tokens {mode:<7} {path:<10} {row['seconds']:7.2f} s  peak {row['peak_mb']:7.0f} MB",
                    flush=True,
                )
    print("\n| tokens | mode | dense SDPA s | Longformer s | Longformer / dense | dense peak MB | Longformer peak MB |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for length in sorted({r["length"] for r in rows}):
        for mode in ("forward", "train"):
            d = next((r for r in rows if r["length"] == length and r["mode"] == mode and r["path"] == "dense"), None)
            lf = next(
                (r for r in rows if r["length"] == length and r["mode"] == mode and r["path"] == "longformer"), None
            )
            if d and lf:
                print(f"| {length} | {mode} | {d['seconds']:.2f} | {lf['seconds']:.2f} | {lf['seconds'] / d['seconds']:.2f} "
                      f"| {d['peak_mb']:.0f} | {lf['peak_mb']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
