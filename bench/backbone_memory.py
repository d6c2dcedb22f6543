"""Large backbones on small machines: full fine-tuning vs LoRA vs a frozen encoder (+ gradient checkpointing).

For each preset (a RoBERTa of that size, randomly initialised, saved as a pre-trained model directory)
and each mode, `protlm finetune --task localization` runs in its own process for a few steps, fp32, on
a DeepLoc-format FASTA of 2,000 SCL2205 proteins (+ 20 test; labels assigned in turn: this measures
cost, not accuracy, and keeps the final evaluation short). Reported per run: trainable parameters, peak RSS of the
process (model + optimizer state + activations + data), and the median optimizer-step time (from
metrics.jsonl, the first two steps dropped).

    .venv/bin/python bench/backbone_memory.py --presets esm-size,roberta-base --steps 8

The tokenizer is `--tokenizer` or protlm's default trained on SCL2205 into the work dir.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODES = {
    "full": [],
    "full + checkpointing": ["--gradient-checkpointing"],
    "lora r=8": ["--lora-rank", "8"],
    "lora r=8 + checkpointing": ["--lora-rank", "8", "--gradient-checkpointing"],
    "frozen": ["--freeze"],
    "full (kernels off)": ["--kernels", "off"],  # issue 17: the training kernels in fine-tuning
    "lora r=8 (kernels off)": ["--lora-rank", "8", "--kernels", "off"],
}


def child(args: list[str], report: str) -> None:
    """Run `protlm ARGS` in this process; write peak RSS and exit status to `report`."""
    from protlm.cli import main

    code = 0
    try:
        main(args)
    except SystemExit as e:
        code = e.code or 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    Path(report).write_text(json.dumps({"peak_rss": peak, "code": code}))


def model_dir(preset: str, tokenizer: Path, work: Path) -> Path:
    from protlm.models import build_mlm
    from protlm.tokenization import load_tokenizer

    out = work / f"model-{preset}"
    if not (out / "model.safetensors").is_file():
        tok = load_tokenizer(tokenizer)
        build_mlm(preset, tok, seed=0).save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
    return out


def task_file(work: Path) -> Path:
    from protlm.corpora import open_corpus
    from protlm.tasks.readers import DEEPLOC_LABELS

    out = work / "deeploc_2000.fasta"
    if not out.is_file():
        with out.open("w") as f:
            for k, rec in enumerate(open_corpus("scl2205:train").records()):
                if k == 2020:
                    break
                f.write(
                    f">{rec.id} {DEEPLOC_LABELS[k % len(DEEPLOC_LABELS)]}-M{' test' if k >= 2000 else ''}\n{rec.seq}\n"
                )
    return out


def run(preset: str, mode: str, model: Path, work: Path, steps: int, tokens_per_batch: int) -> dict:
    out = work / f"ft-{preset}-{mode.replace(' ', '_').replace('+', 'p').replace('=', '')}"
    recipe = work / "recipe.yaml"
    recipe.write_text("precision: fp32\nlog_every: 1\n")
    args = ["finetune", "--task", "localization", "--data", str(task_file(work)), "--model", str(model), "--out",
            str(out), "--config", str(recipe), "--max-steps", str(steps), "--tokens-per-batch", str(tokens_per_batch),
            "--cache-dir", str(work / "cache"), *MODES[mode]]  # fmt: skip
    report = work / "report.json"
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", str(report), "--", *args], capture_output=True,
                          text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    rep = json.loads(report.read_text())
    if done.returncode or rep["code"]:
        raise SystemExit(f"{preset} {mode} failed:\n{done.stderr[-2000:]}")
    trainable = float(re.search(r"\(([\d.]+)M trainable parameters", done.stderr).group(1)) * 1e6
    metrics = [json.loads(line) for line in (out / "seed-0" / "metrics.jsonl").read_text().splitlines()]
    elapsed = [m["elapsed_s"] for m in metrics if "elapsed_s" in m]
    step_s = float(np.median(np.diff(elapsed)[2:])) if len(elapsed) > 3 else float("nan")
    return {"preset": preset, "mode": mode, "trainable": trainable, "peak_rss_gb": rep["peak_rss"] / 1e9,
            "step_s": step_s, "wall_s": wall}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--presets", default="esm-size,roberta-base")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--tokens-per-batch", type=int, default=4096)
    ap.add_argument("--tokenizer", type=Path)
    ap.add_argument("--work", type=Path, default=Path("/tmp/protlm_backbone_memory"))
    ap.add_argument("--json", type=Path)
    args, rest = ap.parse_known_args()
    if args.child:
        return child(rest[1:] if rest[:1] == ["--"] else rest, args.child)
    args.work.mkdir(parents=True, exist_ok=True)
    tok = args.tokenizer or args.work / "tokenizer"
    if not (tok / "tokenizer.json").is_file():
        subprocess.run([sys.executable, "-m", "protlm", "tokenizer", "train", "--out", str(tok)], check=True)
    rows = []
    print("| preset | mode | trainable params | peak RSS | step time |\n|---|---|---:|---:|---:|")
    for preset in args.presets.split(","):
        model = model_dir(preset, tok, args.work)
        for mode in args.modes.split(","):
            r = run(preset, mode, model, args.work, args.steps, args.tokens_per_batch)
            rows.append(r)
            print(f"| {preset} | {mode} | {r['trainable'] / 1e6:.2f}M | {r['peak_rss_gb']:.2f} GB | "
                  f"{r['step_s']:.2f} s |", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
