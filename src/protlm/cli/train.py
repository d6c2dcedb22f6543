"""`protlm pretrain`, `finetune`, `evaluate`, `longformer convert`, `plot`, `demo`: the training commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from protlm.cli.options import (
    CheckpointingOpt,
    KernelsOpt,
    LoraAlphaOpt,
    LoraRankOpt,
    LoraTargetsOpt,
    SequencesOpt,
    StrictOpt,
)
from protlm.errors import ProtlmError
from protlm.io.structured import read_json

longformer_app = typer.Typer(help="Long inputs: Longformer models from trained RoBERTa.", no_args_is_help=True)


def pretrain_cmd(
    out: Annotated[
        Path | None, typer.Option(help="Run directory: checkpoints, metrics.jsonl, config.yaml, model/.")
    ] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="Tokenizer directory (protlm tokenizer train); default: a pre-trained --model's.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML recipe; flags given on the command line override it.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Preset (tiny, roberta-small, roberta-base, esm-size), preset YAML, or a pre-trained model "
            "to continue (dir or HF Hub id, e.g. facebook/esm2_t6_8M_UR50D; its tokenizer by default)."
        ),
    ] = None,
    corpus: Annotated[
        str | None,
        typer.Option(
            help="Single-protein corpus: a corpus store, a file or scl2205[:SPLIT] (prepared into the cache once). "
            "Default scl2205 (train+eval)."
        ),
    ] = None,
    no_corpus: Annotated[bool, typer.Option("--no-corpus", help="Train on --pairs only.")] = False,
    pairs: Annotated[
        str | None,
        typer.Option(
            help="Binding / non-binding pairs: a pair store (`protlm pairs prepare`), a pair table "
            "(id_a,id_b,seq_a,seq_b[,label][,split]) or a directory of pairs*.parquet (prepared into the cache once), "
            "or 'builtin'."
        ),
    ] = None,
    assemblies: Annotated[
        str | None,
        typer.Option(help="Assemblies of 2+ proteins: FASTA with chains joined by ':', or an id,members table."),
    ] = None,
    assembly_sequences: Annotated[
        str | None, typer.Option(help="Sequences of the members of an id,members assembly table.")
    ] = None,
    mix: Annotated[
        str | None,
        typer.Option(help="Mixture weights, e.g. singles=1,binding=0.5,nonbinding=0.5,assemblies=1 (default all 1)."),
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="Longest input incl. special tokens (default: the model's).")
    ] = None,
    tokens_per_batch: Annotated[int | None, typer.Option(help="Token budget of one batch (padded tokens).")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Micro-batches accumulated per optimizer step.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (AdamW).")] = None,
    warmup_steps: Annotated[int | None, typer.Option(help="Linear warmup steps, then linear decay.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")] = None,
    max_epochs: Annotated[float | None, typer.Option(help="Stop after this many epochs.")] = None,
    max_time: Annotated[
        str | None, typer.Option(help="Stop after this much training time, e.g. 90s, 20m, 1h30m.")
    ] = None,
    precision: Annotated[str | None, typer.Option(help="auto (bf16 where the hardware has it), bf16 or fp32.")] = None,
    prefetch: Annotated[
        str | None,
        typer.Option(help="on: build the next batch in a background thread (default off: no measured gain)."),
    ] = None,
    eval_every: Annotated[int | None, typer.Option(help="Held-out evaluation every N steps.")] = None,
    save_every: Annotated[int | None, typer.Option(help="Checkpoint every N steps.")] = None,
    log_every: Annotated[int | None, typer.Option(help="Log metrics every N steps.")] = None,
    dropout: Annotated[float | None, typer.Option(help="Override the preset's dropout.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of initialisation, batching, masking and dropout.")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the newest good checkpoint in --out.")
    ] = False,
    strict: StrictOpt = False,
    cache_dir: Annotated[str | None, typer.Option(help="Tokenized-corpus cache (default ~/.cache/protlm).")] = None,
    lora_rank: LoraRankOpt = None,
    lora_alpha: LoraAlphaOpt = None,
    lora_targets: LoraTargetsOpt = None,
    gradient_checkpointing: CheckpointingOpt = False,
    kernels: KernelsOpt = None,
) -> None:
    """Masked-LM pre-training on single proteins and label-agnostic binding / non-binding pairs: a fresh
    model from a preset, or continued pre-training of a pre-trained one (ESM-2, ProtBERT, RoBERTa; dir or Hub id)."""
    from protlm.train.config import PretrainConfig, load_config, overrides_from, parse_mix
    from protlm.train.pretrain import pretrain

    special = {"corpus": "" if no_corpus else corpus, "mix": parse_mix(mix) if mix else None}
    overrides = overrides_from(PretrainConfig, locals(), **special)
    cfg = load_config(PretrainConfig, config, overrides)
    pretrain(cfg, log=lambda msg: typer.echo(msg, err=True))


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ProtlmError(f"--seeds {text!r}: use e.g. 0,1,2") from None


def finetune_cmd(
    task: Annotated[
        str, typer.Option(help="localization, solubility, remote-homology, family, ppi, tcr, assembly, ss3, ss8.")
    ],
    model: Annotated[
        str,
        typer.Option(
            help="Pre-trained model (dir or HF Hub id: protlm, ESM-2, ProtBERT, RoBERTa); scratch:DIR (its "
            "architecture and tokenizer, random init); scratch "
            "(with --tokenizer, --preset); or baseline (amino-acid + dipeptide composition, logistic regression)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Output dir: seed-K/ runs (model/, eval/) and summary.json.")],
    data: Annotated[
        str | None,
        typer.Option(help="Task data (format by task: see docs/finetune.md). Default: the built-in data, if any."),
    ] = None,
    background: Annotated[
        str | None, typer.Option(help="tcr: background CDR3 beta list (one per line) for negatives.")
    ] = None,
    sequences: SequencesOpt = None,
    config: Annotated[Path | None, typer.Option(help="YAML recipe; command-line flags override it.")] = None,
    seeds: Annotated[str | None, typer.Option(help="Training seeds, e.g. 0,1,2: results as mean ± std.")] = None,
    split_seed: Annotated[int | None, typer.Option(help="Seed of splits made by protlm (not of training).")] = None,
    freeze: Annotated[bool, typer.Option("--freeze", help="Frozen encoder + light head (mean pooling).")] = False,
    pooling: Annotated[str | None, typer.Option(help="cls or mean (default cls; mean with --freeze).")] = None,
    weighted_loss: Annotated[
        bool, typer.Option("--weighted-loss", help="Inverse-frequency class weights in the loss.")
    ] = False,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer dir for --model scratch.")] = None,
    preset: Annotated[str | None, typer.Option(help="Model preset for --model scratch (default tiny).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default: the task's).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per batch (default: the task's).")] = None,
    tokens_per_batch: Annotated[int | None, typer.Option(help="Token budget of one batch.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Window length in tokens (default: the model's).")] = None,
    max_epochs: Annotated[float | None, typer.Option(help="Epochs (default: the task's).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")] = None,
    max_time: Annotated[str | None, typer.Option(help="Training time per seed, e.g. 90s, 20m.")] = None,
    train_limit: Annotated[int | None, typer.Option(help="Use at most this many training examples.")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Dev evaluation every N steps.")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Micro-batches accumulated per optimizer step.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue each seed from its newest checkpoint.")] = False,
    strict: StrictOpt = False,
    cache_dir: Annotated[str | None, typer.Option(help="Tokenized-data cache (default ~/.cache/protlm).")] = None,
    lora_rank: LoraRankOpt = None,
    lora_alpha: LoraAlphaOpt = None,
    lora_targets: LoraTargetsOpt = None,
    gradient_checkpointing: CheckpointingOpt = False,
    kernels: KernelsOpt = None,
) -> None:
    """Fine-tune a pre-trained model (or the scratch / composition references) on a downstream task."""
    from protlm.tasks.finetune import FinetuneConfig, finetune
    from protlm.train.config import load_config, overrides_from

    overrides = overrides_from(FinetuneConfig, locals(), seeds=_seeds(seeds))
    cfg = load_config(FinetuneConfig, config, overrides)
    finetune(cfg, log=lambda msg: typer.echo(msg, err=True))
    typer.echo(f"results: {out / 'summary.json'}")


def evaluate_cmd(
    model: Annotated[Path, typer.Option(help="A fine-tuned model dir (OUT/seed-K/model from protlm finetune).")],
    split: Annotated[
        list[str] | None, typer.Option(help="Split(s) to score (default: dev and every test split).")
    ] = None,
    data: Annotated[str | None, typer.Option(help="Task data (default: the data the model was trained on).")] = None,
    background: Annotated[str | None, typer.Option(help="tcr: background CDR3 beta list.")] = None,
    sequences: SequencesOpt = None,
    out: Annotated[Path | None, typer.Option(help="Output dir (default MODEL/../eval).")] = None,
) -> None:
    """Score a fine-tuned model: results.json with every metric, confusion matrix and ROC / PR PNGs."""
    from protlm.tasks.evaluate import evaluate_model, load_finetuned
    from protlm.tasks.table import get_task, load_task_data

    task_data = None
    if data is not None:
        info = load_finetuned(model)[3]
        d = info["data"]
        task_data = load_task_data(get_task(info["task"]), data, d["split_seed"], d["strict"], background, sequences)
    target = out or model.parent / "eval"
    evaluate_model(model, split, target, task_data, log=lambda msg: typer.echo(msg, err=True))
    typer.echo(f"results: {target / 'results.json'}")


@longformer_app.command("convert")
def longformer_convert(
    source: Annotated[Path, typer.Option("--from", help="A trained RoBERTa masked-LM dir (protlm pretrain model/).")],
    out: Annotated[Path, typer.Option(help="Output dir: LongformerForMaskedLM + tokenizer.")],
    max_length: Annotated[int, typer.Option(help="Longest input in tokens (incl. specials).")] = 2048,
    window: Annotated[int, typer.Option(help="Sliding attention window in tokens (even).")] = 512,
    global_separators: Annotated[
        bool, typer.Option("--global-separators", help="Global attention on every </s> too (pairs, assemblies).")
    ] = False,
    attention: Annotated[
        str,
        typer.Option(
            help="longformer (sliding window), dense (RoBERTa, positions extended, full SDPA attention) or auto "
            "(dense where the window would cover every input anyway, as it is faster)."
        ),
    ] = "longformer",
) -> None:
    """Long-input model from a trained RoBERTa: positions tiled, local and global attention copied."""
    from protlm.models.longformer import INFO_FILE, convert_roberta_to_longformer

    path = convert_roberta_to_longformer(source, out, max_length, window, global_separators, attention)
    kind = read_json(path / INFO_FILE)["attention"]
    typer.echo(
        f"{kind} model ({max_length} tokens{', window ' + str(window) if kind == 'longformer' else ''}) written to {path}"
    )


def plot_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory with metrics.jsonl.")],
    out: Annotated[Path | None, typer.Option(help="PNG path (default RUN_DIR/loss.png).")] = None,
) -> None:
    """Plot training and held-out loss / perplexity of a run."""
    from protlm.train.metrics import plot_run

    typer.echo(f"loss curve written to {plot_run(run_dir, out)}")


def demo(
    out: Annotated[Path, typer.Option(help="Run directory for everything the demo writes.")] = Path("runs/demo"),
    quick: Annotated[
        bool,
        typer.Option(
            help="Smoke run: 20 pre-training and 10 fine-tuning steps (about 2 min); "
            "checks an install, the numbers mean nothing."
        ),
    ] = False,
) -> None:
    """End-to-end demo on built-in data (no download): tokenizer, pre-training, localization fine-tuning."""
    from protlm.demo import run_demo

    run_demo(out, echo=typer.echo, quick=quick)
