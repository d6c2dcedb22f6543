"""`make demo`: the main job end to end on the built-in data, sized for a 2-core CPU.

1. train the default protein tokenizer on SCL2205 train+eval and report its compression on heldout;
2. pre-train the `tiny` RoBERTa with masked-LM on SCL2205 train+eval singles plus the built-in
   binding / non-binding pairs for a fixed number of steps and report held-out MLM loss before and after;
3. fine-tune it on SCL2205 localization and print heldout accuracy / macro-F1 beside the composition
   baseline and the same architecture trained from scratch (equal steps).
Every stage runs its steps whatever the machine's speed (the outcome depends on steps, not seconds); a time
bound stays only as a safety net, and the output says the steps done against those planned and flags a
model that predicts one class.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from protlm.corpora import open_corpus
from protlm.io import SkipReport
from protlm.io.atomic import output_dir
from protlm.tasks.finetune import FinetuneConfig, finetune
from protlm.tokenization import DEFAULT_KIND, DEFAULT_VOCAB_SIZE, train_from_corpus
from protlm.tokenizer_report import compression_report, plot_lengths
from protlm.train.config import PretrainConfig
from protlm.train.metrics import read_metrics
from protlm.train.pretrain import pretrain

STEPS = 300  # pre-training steps of the demo run
MINUTES = 20  # a safety net only: about 4x what 2 CPU cores need (README)
FINETUNE_STEPS = 150  # per neural model
FINETUNE_MINUTES = 10  # a safety net only, per model
QUICK_STEPS, QUICK_FINETUNE_STEPS = 20, 10  # `protlm demo --quick`: every stage runs, the numbers mean nothing


def run_demo(
    out: str | Path, echo: Callable[[str], None] = print, minutes: float = MINUTES, quick: bool = False
) -> None:
    """The three stages; `quick` shrinks pre-training and fine-tuning to a smoke run (the install check)."""
    out = output_dir(out)
    steps, finetune_steps = (QUICK_STEPS, QUICK_FINETUNE_STEPS) if quick else (STEPS, FINETUNE_STEPS)
    t0 = time.perf_counter()
    tok_dir = out / "tokenizer"
    train_skips = SkipReport("scl2205 train+eval")
    tok = train_from_corpus(open_corpus("scl2205"), tok_dir, DEFAULT_KIND, DEFAULT_VOCAB_SIZE, report=train_skips)
    echo(train_skips.summary())
    echo(
        f"[1/3] {DEFAULT_KIND} tokenizer ({len(tok):,} tokens) trained in {time.perf_counter() - t0:.0f}s -> {tok_dir}"
    )
    held_skips = SkipReport("scl2205 heldout")
    heldout = list(open_corpus("scl2205:heldout").sequences(report=held_skips))
    report, tok_len, res_len = compression_report(tok, heldout)
    echo(f"\nCompression on SCL2205 heldout ({len(heldout):,} proteins never used for training):")
    echo(report.to_text())
    png = plot_lengths(tok_len, res_len, out / "token_lengths.png", "SCL2205 heldout: characters vs BPE tokens")
    echo(f"length histogram: {png}\n")

    run_dir = out / "pretrain"
    cfg = PretrainConfig(
        out=str(run_dir),
        tokenizer=str(tok_dir),
        model="tiny",
        corpus="scl2205",
        pairs="builtin",  # shipped human binding pairs + sampled non-binding pairs (label-agnostic MLM)
        max_steps=steps,
        max_time=f"{minutes}m",
        tokens_per_batch=8192,
        warmup_steps=steps // 10,
        lr=1e-3,
        eval_every=steps // 4,
        save_every=steps // 4,
        log_every=10,
        resume=(run_dir / "checkpoints").is_dir(),
    )
    cfg.validate()
    echo(f"[2/3] pre-training the tiny RoBERTa (masked LM, singles + built-in pairs), {steps} steps -> {run_dir}")
    state = pretrain(cfg, log=echo)
    evals = [r for r in read_metrics(run_dir) if "eval_loss" in r]
    first, last = evals[0], evals[-1]
    echo(
        f"\nheld-out MLM loss: {first['eval_loss']:.3f} nats (perplexity {first['eval_ppl']:.0f}) at step 0 -> "
        f"{last['eval_loss']:.3f} nats (perplexity {last['eval_ppl']:.0f}) at step {last['step']} "
        f"({state.tokens:,} tokens)"
    )
    echo(steps_line("pre-training", state.step, steps, state.stopped_by, minutes))
    echo(f"model: {run_dir / 'model'}  (transformers.AutoModelForMaskedLM.from_pretrained loads it)")

    finetune_localization(run_dir / "model", out / "localization", echo, finetune_steps)


def finetune_localization(
    model_dir: Path, out: Path, echo: Callable[[str], None] = print, steps: int = FINETUNE_STEPS
) -> dict:
    """Composition baseline, scratch and pre-trained on SCL2205 localization; prints the heldout table."""
    echo(
        f"\n[3/3] fine-tuning on SCL2205 localization (13 classes; heldout = test): composition baseline, "
        f"scratch and pre-trained, {steps} steps each (at most {FINETUNE_MINUTES} min) -> {out}"
    )
    import shutil

    shutil.rmtree(out, ignore_errors=True)  # a fresh demo model gets fresh fine-tuning runs
    rows = {}
    for name, model in (
        ("composition baseline", "baseline"),
        ("scratch", f"scratch:{model_dir}"),
        ("pre-trained", str(model_dir)),
    ):
        cfg = FinetuneConfig(
            out=str(out / name.split()[0]), task="localization", model=model, max_steps=steps,
            max_time=f"{FINETUNE_MINUTES}m", lr=1e-3, warmup_ratio=0.1, log_every=10,
        )  # fmt: skip
        cfg.validate()
        summary = finetune(cfg, log=lambda _msg: None)
        rows[name] = {**summary["splits"]["test"], "note": summary["constant"].get("test", {}).get(0, "")}
        if model == "baseline":
            echo(f"  {name}: fitted")
            continue
        records = [r for r in read_metrics(out / name.split()[0] / "seed-0") if "loss" in r]
        done = records[-1]["step"] if records else 0
        echo("  " + steps_line(name, done, steps, "max_time" if done < steps else "max_steps", FINETUNE_MINUTES))
    echo("\nSCL2205 heldout (2,631 proteins), one seed:")
    echo(f"  {'model':<22} {'accuracy':>9} {'macro-F1':>9} {'MCC':>7}  note")
    for name, r in rows.items():
        echo(f"  {name:<22} {r['accuracy']['mean']:>9.3f} {r['macro_f1']['mean']:>9.3f} {r['mcc']['mean']:>7.3f}  "
             f"{r['note']}".rstrip())  # fmt: skip
    if any(r["note"] for r in rows.values()):
        echo("  (a model that predicts one class scores the class balance: it has not learned the task)")
    echo(f"results, confusion matrices and predictions: {out}/*/seed-0/eval/")
    return rows


def steps_line(what: str, done: int, planned: int, stopped_by: str, minutes: float) -> str:
    """`pre-training: 300 of 300 steps`, or what stopped it short, said plainly."""
    if done >= planned:
        return f"{what}: {done:,} of {planned:,} steps"
    why = f"the {minutes:g}-minute safety limit" if stopped_by == "max_time" else stopped_by
    return (f"{what}: stopped at step {done:,} of {planned:,} by {why} (this machine is slower than the 2 CPU "
            "cores the demo is sized for): its numbers below are of an undertrained model")  # fmt: skip
