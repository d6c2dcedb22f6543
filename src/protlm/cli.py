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


def _policy(strict: bool, max_length: int | None):
    from protlm.io import ResiduePolicy

    return ResiduePolicy(strict=strict, max_length=max_length)


@tokenizer_app.command("train")
def tokenizer_train(
    out: Annotated[Path, typer.Option(help="Output directory (an HF tokenizer directory).")],
    corpus: CorpusOpt = "scl2205",
    kind: Annotated[
        str, typer.Option(help="bpe (residue alphabet, default), byte-bpe (the paper's), unigram, char.")
    ] = "bpe",
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
