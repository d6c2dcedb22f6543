"""`protlm` command line: thin subcommands over the library.

Each command parses options, calls one library function and prints where its outputs went.
User errors (`ProtlmError`) print one line `protlm: error: ...` and exit with status 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from protlm.errors import ProtlmError

app = typer.Typer(
    help="Protein language models: BPE tokenizers, masked-LM pre-training on proteins and binding pairs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
tokenizer_app = typer.Typer(help="Train and measure protein tokenizers.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")
pairs_app = typer.Typer(help="Build and inspect binding / non-binding pair sets.", no_args_is_help=True)
app.add_typer(pairs_app, name="pairs")
longformer_app = typer.Typer(help="Long inputs: Longformer models from trained RoBERTa.", no_args_is_help=True)
app.add_typer(longformer_app, name="longformer")

CorpusOpt = Annotated[
    str,
    typer.Option(
        "--corpus",
        help="FASTA/TSV/CSV/Parquet file (optionally .gz), or scl2205[:SPLIT] with SPLIT one of train, eval, "
        "heldout, full, train+eval, cv0-train ... cv4-test. Default: SCL2205 train+eval.",
    ),
]
IdColOpt = Annotated[str, typer.Option(help="Id column of a TSV/CSV/Parquet corpus.")]
SeqColOpt = Annotated[str, typer.Option(help="Sequence column of a TSV/CSV/Parquet corpus.")]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Reject the rare residues U, O, B, Z, J instead of mapping them to X.")
]
MaxLenOpt = Annotated[int | None, typer.Option(help="Skip (and report) sequences longer than this many residues.")]


SplitOpt = Annotated[str, typer.Option(help="strict (protein-disjoint train/dev/test) or random.")]
NegOpt = Annotated[float, typer.Option(help="Sampled non-binding pairs per positive.")]
PairSeedOpt = Annotated[int, typer.Option(help="Seed of the split and the negative sampling.")]
GroupsOpt = Annotated[
    Path | None,
    typer.Option(help="Clusters for the strict split: TSV 'representative<TAB>member' (mmseqs cluster.tsv)."),
]


def _policy(strict: bool, max_length: int | None):
    from protlm.io import ResiduePolicy

    return ResiduePolicy(strict=strict, max_length=max_length)


@tokenizer_app.command("train")
def tokenizer_train(
    out: Annotated[Path, typer.Option(help="Output directory (an HF tokenizer directory).")],
    corpus: CorpusOpt = "scl2205",
    kind: Annotated[
        str,
        typer.Option(
            help="bpe-shortest (default: residue BPE vocabulary, fewest-token segmentation), bpe, byte-bpe (the paper's), unigram, char."
        ),
    ] = "bpe-shortest",
    vocab_size: Annotated[
        int | None, typer.Option(help="Total vocabulary size incl. 5 special tokens. Default 10,261 (the paper's).")
    ] = None,
    merges: Annotated[
        int | None, typer.Option(help="Number of BPE merges instead of --vocab-size (paper: 10,000).")
    ] = None,
    max_sequences: Annotated[int | None, typer.Option(help="Train on at most this many sequences.")] = None,
    id_col: IdColOpt = "id",
    seq_col: SeqColOpt = "sequence",
    strict: StrictOpt = False,
    max_length: MaxLenOpt = None,
) -> None:
    """Train a protein tokenizer and save it where `AutoTokenizer.from_pretrained` loads it."""
    from protlm.corpora import open_corpus
    from protlm.io import SkipReport
    from protlm.tokenization import DEFAULT_VOCAB_SIZE, train_from_corpus, vocab_size_for_merges

    if vocab_size is not None and merges is not None:
        raise ProtlmError("give --vocab-size or --merges, not both")
    size = vocab_size_for_merges(kind, merges) if merges is not None else (vocab_size or DEFAULT_VOCAB_SIZE)
    report = SkipReport(corpus)
    tok = train_from_corpus(
        open_corpus(corpus, id_col, seq_col), out, kind, size, _policy(strict, max_length), report, max_sequences
    )
    typer.echo(report.summary(), err=True)
    typer.echo(f"{kind} tokenizer with {len(tok):,} tokens written to {out}")


@tokenizer_app.command("stats")
def tokenizer_stats(
    tokenizer: Annotated[Path, typer.Option(help="Tokenizer directory.")],
    corpus: CorpusOpt = "scl2205:heldout",
    plot: Annotated[Path | None, typer.Option(help="Write a length histogram PNG here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
    id_col: IdColOpt = "id",
    seq_col: SeqColOpt = "sequence",
    strict: StrictOpt = False,
    max_length: MaxLenOpt = None,
) -> None:
    """Compression report: residues per token, length reduction, share of long sequences, throughput."""
    from protlm.corpora import open_corpus
    from protlm.io import SkipReport
    from protlm.tokenization import load_tokenizer
    from protlm.tokenizer_report import compression_report, plot_lengths

    tok = load_tokenizer(tokenizer)
    skips = SkipReport(corpus)
    seqs = list(open_corpus(corpus, id_col, seq_col).sequences(_policy(strict, max_length), skips))
    if not seqs:
        raise ProtlmError(f"{corpus}: no usable sequences")
    typer.echo(skips.summary(), err=True)
    report, tok_len, res_len = compression_report(tok, seqs)
    typer.echo(f"tokenizer {tokenizer} ({len(tok):,} tokens) on {corpus}")
    typer.echo(report.to_text())
    if plot:
        typer.echo(
            f"length histogram written to {plot_lengths(tok_len, res_len, plot, f'{tokenizer.name} on {corpus}')}"
        )
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        typer.echo(f"report written to {json_out}")


@pairs_app.command("build")
def pairs_build(
    pairs: Annotated[
        Path, typer.Option(help="TSV/CSV of id pairs (columns id_a, id_b), e.g. ppi_positive_pairs.tsv.gz.")
    ],
    sequences: Annotated[Path, typer.Option(help="Sequences of those ids: FASTA/TSV/Parquet (optionally .gz).")],
    out: Annotated[Path, typer.Option(help="Output directory: pairs.parquet + report.json.")],
    split: SplitOpt = "strict",
    negatives_per_positive: NegOpt = 1.0,
    seed: PairSeedOpt = 0,
    groups: GroupsOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Positives from an id-pair table + sampled negatives, split, as a protlm pair table."""
    from protlm.pairs import build_pairs

    report = build_pairs(pairs, sequences, out, split, negatives_per_positive, seed, _policy(strict, None), groups)
    typer.echo(report["read"], err=True)
    for reason, n in report["dropped"].items():
        typer.echo(f"dropped {n:,} {reason}", err=True)
    for name, n in report["negatives_short"].items():
        typer.echo(f"{name}: {n:,} negatives short (too few non-binding protein pairs in the split)", err=True)
    typer.echo(json.dumps(report["sizes"]))
    typer.echo(f"{report['rows']:,} pairs written to {out / 'pairs.parquet'} (report: {out / 'report.json'})")


@pairs_app.command("build-string")
def pairs_build_string(
    links: Annotated[
        Path, typer.Option(help="STRING links file (protein.physical.links.v12.0.txt.gz or .detailed/.full).")
    ],
    sequences: Annotated[Path, typer.Option(help="STRING sequences FASTA (protein.sequences.v12.0.fa.gz).")],
    out: Annotated[Path, typer.Option(help="Output directory: pairs-*.parquet shards + report.json.")],
    species: Annotated[str | None, typer.Option(help="NCBI taxon id to keep, e.g. 9606.")] = None,
    min_score: Annotated[int, typer.Option(help="Positives: combined_score >= this (0-1000; paper: 700).")] = 700,
    negatives_per_positive: NegOpt = 1.0,
    split: SplitOpt = "strict",
    tokenizer: Annotated[Path | None, typer.Option(help="Tokenizer to measure pair lengths with.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Drop (and count) pairs longer than this many tokens.")] = 512,
    memory_limit: Annotated[str, typer.Option(help="DuckDB memory limit; it spills to disk beyond it.")] = "1GB",
    seed: PairSeedOpt = 0,
    groups: GroupsOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Binding pairs from STRING (score threshold) + random non-linked pairs, out of core on DuckDB."""
    from protlm.pairs.string import build_string_pairs
    from protlm.tokenization import load_tokenizer

    tok = load_tokenizer(tokenizer) if tokenizer else None
    report = build_string_pairs(links, sequences, out, min_score, species, negatives_per_positive, split,
                                tokenizer=tok, max_tokens=max_tokens, seed=seed, memory_limit=memory_limit,
                                groups=groups, policy=_policy(strict, None))  # fmt: skip
    typer.echo(json.dumps(report, indent=2))
    typer.echo(f"pairs written to {out}", err=True)


@pairs_app.command("from-lmdb")
def pairs_from_lmdb(
    lmdb_path: Annotated[Path, typer.Argument(help="PEER/TAPE PPI LMDB (primary_1, primary_2, interaction).")],
    out: Annotated[Path, typer.Option(help="Output pair table (.parquet or .tsv).")],
    split: Annotated[str, typer.Option(help="Split name to give these pairs: train, dev or test.")] = "train",
    strict: StrictOpt = False,
) -> None:
    """Convert a PEER HumanPPI/YeastPPI LMDB split into a protlm pair table (no code is unpickled)."""
    from protlm.io import SkipReport
    from protlm.pairs import write_pairs
    from protlm.pairs.lmdb_ppi import read_ppi_lmdb
    from protlm.pairs.table import SPLITS

    if split not in SPLITS:
        raise ProtlmError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    report = SkipReport(str(lmdb_path))
    n = write_pairs(read_ppi_lmdb(lmdb_path, split, _policy(strict, None), report), out)
    typer.echo(report.summary(), err=True)
    typer.echo(f"{n:,} pairs written to {out}")


@pairs_app.command("stats")
def pairs_stats_cmd(
    path: Annotated[str, typer.Argument(help="Pair directory (with pairs.parquet), pair table, or 'builtin'.")],
    tokenizer: Annotated[Path | None, typer.Option(help="Also report token lengths with this tokenizer.")] = None,
) -> None:
    """Label balance, split sizes and length distribution of a pair set."""
    from protlm.pairs import builtin_pairs, pairs_stats
    from protlm.tokenization import load_tokenizer

    tok = load_tokenizer(tokenizer) if tokenizer else None
    typer.echo(json.dumps(pairs_stats(builtin_pairs() if path == "builtin" else path, tok), indent=2))


@app.command("pretrain")
def pretrain_cmd(
    out: Annotated[
        Path | None, typer.Option(help="Run directory: checkpoints, metrics.jsonl, config.yaml, model/.")
    ] = None,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer directory (protlm tokenizer train).")] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML recipe; flags given on the command line override it.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Preset (tiny, roberta-small, roberta-base, esm-size), preset YAML, or a model dir."),
    ] = None,
    corpus: Annotated[
        str | None, typer.Option(help="Single-protein corpus: file or scl2205[:SPLIT]. Default scl2205 (train+eval).")
    ] = None,
    no_corpus: Annotated[bool, typer.Option("--no-corpus", help="Train on --pairs only.")] = False,
    pairs: Annotated[
        str | None,
        typer.Option(help="Pair table (id_a,id_b,seq_a,seq_b[,label][,split]): binding / non-binding pairs."),
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
) -> None:
    """Masked-LM pre-training of RoBERTa on single proteins and label-agnostic binding / non-binding pairs."""
    from protlm.train.config import PretrainConfig, load_config, parse_mix
    from protlm.train.pretrain import pretrain

    overrides = {
        "out": str(out) if out else None, "tokenizer": tokenizer, "model": model,
        "corpus": "" if no_corpus else corpus, "pairs": pairs, "mix": parse_mix(mix) if mix else None,
        "assemblies": assemblies, "assembly_sequences": assembly_sequences,
        "max_tokens": max_tokens, "tokens_per_batch": tokens_per_batch, "grad_accum": grad_accum, "lr": lr,
        "warmup_steps": warmup_steps, "max_steps": max_steps, "max_epochs": max_epochs, "max_time": max_time,
        "precision": precision, "eval_every": eval_every, "save_every": save_every, "log_every": log_every,
        "dropout": dropout, "seed": seed, "resume": resume or None, "strict": strict or None, "cache_dir": cache_dir,
    }  # fmt: skip
    cfg = load_config(PretrainConfig, config, overrides)
    pretrain(cfg, log=lambda msg: typer.echo(msg, err=True))


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ProtlmError(f"--seeds {text!r}: use e.g. 0,1,2") from None


@app.command("finetune")
def finetune_cmd(
    task: Annotated[str, typer.Option(help="localization, solubility, remote-homology, family, ppi, tcr, ss3, ss8.")],
    model: Annotated[
        str,
        typer.Option(
            help="Pre-trained model dir; scratch:DIR (its architecture and tokenizer, random init); scratch "
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
) -> None:
    """Fine-tune a pre-trained model (or the scratch / composition references) on a downstream task."""
    from protlm.tasks.finetune import FinetuneConfig, finetune
    from protlm.train.config import load_config

    overrides = {
        "task": task, "model": model, "out": str(out), "data": data, "background": background,
        "seeds": _seeds(seeds), "split_seed": split_seed, "freeze": freeze or None, "pooling": pooling,
        "weighted_loss": weighted_loss or None, "tokenizer": tokenizer, "preset": preset, "lr": lr,
        "batch_size": batch_size, "tokens_per_batch": tokens_per_batch, "max_tokens": max_tokens,
        "max_epochs": max_epochs, "max_steps": max_steps, "max_time": max_time, "train_limit": train_limit,
        "eval_every": eval_every, "grad_accum": grad_accum, "strict": strict or None, "cache_dir": cache_dir,
        "resume": resume or None,
    }  # fmt: skip
    cfg = load_config(FinetuneConfig, config, overrides)
    finetune(cfg, log=lambda msg: typer.echo(msg, err=True))
    typer.echo(f"results: {out / 'summary.json'}")


@app.command("evaluate")
def evaluate_cmd(
    model: Annotated[Path, typer.Option(help="A fine-tuned model dir (OUT/seed-K/model from protlm finetune).")],
    split: Annotated[
        list[str] | None, typer.Option(help="Split(s) to score (default: dev and every test split).")
    ] = None,
    data: Annotated[str | None, typer.Option(help="Task data (default: the data the model was trained on).")] = None,
    background: Annotated[str | None, typer.Option(help="tcr: background CDR3 beta list.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output dir (default MODEL/../eval).")] = None,
) -> None:
    """Score a fine-tuned model: results.json with every metric, confusion matrix and ROC / PR PNGs."""
    from protlm.tasks.evaluate import evaluate_model, load_finetuned
    from protlm.tasks.table import get_task, load_task_data

    task_data = None
    if data is not None:
        info = load_finetuned(model)[3]
        d = info["data"]
        task_data = load_task_data(get_task(info["task"]), data, background, d["split_seed"], d["strict"])
    target = out or model.parent / "eval"
    evaluate_model(model, split, target, task_data, log=lambda msg: typer.echo(msg, err=True))
    typer.echo(f"results: {target / 'results.json'}")


@app.command("embed")
def embed_cmd(
    input: Annotated[
        Path,
        typer.Argument(help="FASTA (chains joined by ':' = one assembly), or TSV/CSV/Parquet with --id-col/--seq-col."),
    ],
    model: Annotated[Path, typer.Option(help="Model dir: protlm pretrain output or a fine-tuned model/.")],
    out: Annotated[Path, typer.Option(help="Output file: .parquet, .npz or .h5 (format by extension).")],
    pool: Annotated[
        list[str] | None, typer.Option(help="mean, cls or residue (per-residue vectors); repeat for several.")
    ] = None,
    layers: Annotated[str, typer.Option(help="Hidden states, e.g. -1 or -1,-4 (0 = embeddings).")] = "-1",
    tokens_per_batch: Annotated[int, typer.Option(help="Token budget of one batch.")] = 16384,
    stride: Annotated[
        int | None, typer.Option(help="Tokens between windows over long proteins (default half a window).")
    ] = None,
    precision: Annotated[str, typer.Option(help="auto (bf16 only where faster), fp32 or bf16.")] = "auto",
    id_col: IdColOpt = "id",
    seq_col: SeqColOpt = "sequence",
    strict: StrictOpt = False,
    max_length: MaxLenOpt = None,
) -> None:
    """Embed proteins of any length: pooled or per-residue vectors, streamed to Parquet / NPZ / HDF5."""
    from protlm.api import load
    from protlm.embed import EmbedOptions
    from protlm.io import SkipReport
    from protlm.io.embeddings import open_writer
    from protlm.pairs.assemblies import read_embed_records

    try:
        layer_ids = tuple(int(x) for x in layers.split(","))
    except ValueError:
        raise ProtlmError(f"--layers {layers!r}: use e.g. -1 or -1,-4") from None
    options = {"pools": tuple(pool or ["mean"]), "layers": layer_ids, "tokens_per_batch": tokens_per_batch,
               "stride": stride, "precision": precision}  # fmt: skip
    keys = EmbedOptions(**options).keys()
    lm = load(model)
    embedder = lm.embedder(**options)
    report = SkipReport(str(input))
    records = read_embed_records(input, _policy(strict, max_length), report, id_col=id_col, seq_col=seq_col)
    writer = open_writer(out, keys)
    from tqdm.auto import tqdm

    n = 0
    with tqdm(unit="res", unit_scale=True, dynamic_ncols=True, mininterval=1.0) as bar:
        try:
            for emb in embedder.embed(records):
                writer.write(emb)
                bar.update(emb.length)
                n += 1
        finally:
            writer.close()
    typer.echo(report.summary(), err=True)
    typer.echo(f"{n:,} embeddings ({', '.join(keys)}) written to {out}")


@app.command("predict")
def predict_cmd(
    input: Annotated[
        Path, typer.Argument(help="FASTA (sequence and residue tasks) or pair table id_a,id_b,seq_a,seq_b (pairs).")
    ],
    model: Annotated[Path, typer.Option(help="A fine-tuned model dir (OUT/seed-K/model of protlm finetune).")],
    out: Annotated[Path, typer.Option(help="Output TSV.")],
    strict: StrictOpt = False,
) -> None:
    """Predict with a fine-tuned model: TSV of id, label and class probabilities (residue tasks: states)."""
    from protlm.api import load
    from protlm.io import SkipReport, read_sequences

    lm = load(model)
    spec = lm.task
    report = SkipReport(str(input))
    policy = _policy(strict, None)
    if spec.kind == "pair":
        from protlm.pairs import read_pairs

        inputs = list(read_pairs(input, policy, report))
    else:
        inputs = list(read_sequences(input, policy, report))
    typer.echo(report.summary(), err=True)
    preds = lm.predict(inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as fh:
        if spec.kind == "residue":
            fh.write("id\tlength\tpredicted\tmean_probability\n")
            for p in preds:
                fh.write(f"{p.id}\t{len(p.probabilities)}\t{p.states}\t{p.probabilities.max(-1).mean():.4f}\n")
        else:
            labels = preds[0].labels if preds else ()
            fh.write("id\tpredicted\t" + "\t".join(f"p_{x}" for x in labels) + "\n")
            for p in preds:
                fh.write(f"{p.id}\t{p.label}\t" + "\t".join(f"{v:.4f}" for v in p.probabilities) + "\n")
    typer.echo(f"{len(preds):,} predictions ({spec.name}) written to {out}")


@app.command("fill")
def fill_cmd(
    text: Annotated[str, typer.Argument(help="A sequence with <mask> where residues are to be predicted.")],
    model: Annotated[Path, typer.Option(help="A pre-trained masked-LM dir (protlm pretrain output).")],
    top_k: Annotated[int, typer.Option(help="Candidates per mask.")] = 5,
) -> None:
    """Masked-residue prediction: the top-k tokens (residue strings) for every <mask>."""
    from protlm.api import load

    for k, candidates in enumerate(load(model).fill(text, top_k)):
        typer.echo(f"mask {k + 1}: " + "  ".join(f"{tok} {p:.3f}" for tok, p in candidates))


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
    kind = json.loads((path / INFO_FILE).read_text())["attention"]
    typer.echo(
        f"{kind} model ({max_length} tokens{', window ' + str(window) if kind == 'longformer' else ''}) written to {path}"
    )


@app.command("plot")
def plot_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory with metrics.jsonl.")],
    out: Annotated[Path | None, typer.Option(help="PNG path (default RUN_DIR/loss.png).")] = None,
) -> None:
    """Plot training and held-out loss / perplexity of a run."""
    from protlm.train.metrics import plot_run

    typer.echo(f"loss curve written to {plot_run(run_dir, out)}")


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Run directory for everything the demo writes.")] = Path("runs/demo"),
) -> None:
    """End-to-end demo on the built-in SCL2205 data (no download): tokenizer -> compression report."""
    from protlm.demo import run_demo

    run_demo(out, echo=typer.echo)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into one line and exit status 2."""
    try:
        app(args=argv, prog_name="protlm", standalone_mode=True)
    except ProtlmError as e:
        typer.echo(f"protlm: error: {e}", err=True)
        raise SystemExit(2) from None
