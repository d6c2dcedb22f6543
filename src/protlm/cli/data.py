"""`protlm tokenizer ...` and `protlm pairs ...`: the data commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from protlm.cli.options import (
    CorpusOpt,
    GroupsOpt,
    IdColOpt,
    MaxLenOpt,
    MemoryOpt,
    NegOpt,
    PairSeedOpt,
    SeqColOpt,
    SplitOpt,
    StrictOpt,
    TokenizerOpt,
    WorkersOpt,
    option,
    residue_policy,
)
from protlm.errors import ProtlmError

tokenizer_app = typer.Typer(help="Train and measure protein tokenizers.", no_args_is_help=True)
pairs_app = typer.Typer(help="Build and inspect binding / non-binding pair sets.", no_args_is_help=True)


@tokenizer_app.command("train")
def tokenizer_train(
    out: option("out", Path, note="a directory (an HF tokenizer directory)."),
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
    warnings: list[str] = []
    tok = train_from_corpus(open_corpus(corpus, id_col, seq_col), out, kind, size,
                            residue_policy(strict, max_length), report, max_sequences, log=warnings.append)  # fmt: skip
    typer.echo(report.summary(), err=True)
    for line in warnings:  # after the summary, where the counts it speaks of are
        typer.echo(line, err=True)
    typer.echo(f"{kind} tokenizer with {len(tok):,} tokens written to {out}")


@tokenizer_app.command("stats")
def tokenizer_stats(
    tokenizer: TokenizerOpt,
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
    from protlm.io.atomic import write_json
    from protlm.tokenization import load_tokenizer
    from protlm.tokenizer_report import compression_report, plot_lengths

    tok = load_tokenizer(tokenizer)
    skips = SkipReport(corpus)
    seqs = list(open_corpus(corpus, id_col, seq_col).sequences(residue_policy(strict, max_length), skips))
    skips.require_used()
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
        write_json(json_out, report.to_dict())
        typer.echo(f"report written to {json_out}")


@pairs_app.command("build")
def pairs_build(
    pairs: option("pairs", Path, note="A TSV / CSV of id pairs (columns id_a, id_b), e.g. ppi_positive_pairs.tsv.gz."),
    sequences: option("sequences", Path),
    out: option("out", Path, note="a directory: pairs.parquet + report.json."),
    split: SplitOpt = "strict",
    negatives_per_positive: NegOpt = 1.0,
    seed: PairSeedOpt = 0,
    groups: GroupsOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Positives from an id-pair table + sampled negatives, split, as a protlm pair table."""
    from protlm.pairs import build_pairs

    report = build_pairs(
        pairs, sequences, out, split, negatives_per_positive, seed, residue_policy(strict, None), groups
    )
    typer.echo(report["sequences_read"], err=True)
    typer.echo(report["read"], err=True)
    for reason, n in report["dropped"].items():
        typer.echo(f"dropped {n:,} {reason}", err=True)
    for name, n in report["negatives_short"].items():
        typer.echo(f"{name}: {n:,} negatives short (too few non-binding protein pairs in the split)", err=True)
    for warning in report["warnings"]:
        typer.echo(warning, err=True)
    typer.echo(json.dumps(report["sizes"]))
    typer.echo(f"{report['rows']:,} pairs written to {out / 'pairs.parquet'} (report: {out / 'report.json'})")


@pairs_app.command("build-string")
def pairs_build_string(
    links: Annotated[
        Path, typer.Option(help="STRING links file (protein.physical.links.v12.0.txt.gz or .detailed/.full).")
    ],
    sequences: option("sequences", Path, note="STRING's FASTA (protein.sequences.v12.0.fa.gz)."),
    out: option("out", Path, note="a directory: pairs-*.parquet shards + report.json."),
    species: Annotated[str | None, typer.Option(help="NCBI taxon id to keep, e.g. 9606.")] = None,
    min_score: Annotated[int, typer.Option(help="Positives: combined_score >= this (0-1000; paper: 700).")] = 700,
    negatives_per_positive: NegOpt = 1.0,
    split: SplitOpt = "strict",
    tokenizer: option("tokenizer", Path | None, note="Measures pair lengths.") = None,
    max_tokens: option("max_tokens", int, note="Longer pairs are dropped (and counted).") = 512,
    memory_limit: MemoryOpt = "1GB",
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
                                groups=groups, policy=residue_policy(strict, None))  # fmt: skip
    typer.echo(report["sequences_read"], err=True)
    typer.echo(json.dumps(report, indent=2))
    for warning in report["warnings"]:
        typer.echo(warning, err=True)
    typer.echo(f"pairs written to {out}", err=True)


@pairs_app.command("prepare")
def pairs_prepare(
    table: Annotated[
        str,
        typer.Argument(
            help="Pair table (id_a, id_b, seq_a, seq_b[, label][, split]: Parquet / TSV / CSV), a directory of "
            "pairs*.parquet shards (as `pairs build-string` writes), or 'builtin'."
        ),
    ],
    tokenizer: TokenizerOpt,
    out: option("out", Path, note="a pair store directory (new)."),
    workers: WorkersOpt = 1,
    memory_limit: MemoryOpt = "1GB",
    strict: StrictOpt = False,
    max_length: MaxLenOpt = None,
) -> None:
    """Prepare a pair table once into a pair store: pairs as protein indices, proteins tokenized once."""
    from protlm.io import SkipReport
    from protlm.store.pairs import prepare_pair_store

    meta = prepare_pair_store(table, tokenizer, out, residue_policy(strict, max_length), workers=workers,
                              memory_limit=memory_limit, log=lambda s: typer.echo(s, err=True))  # fmt: skip
    typer.echo(SkipReport.from_dict(str(table), meta["skip_report"]).summary(), err=True)
    typer.echo(json.dumps(meta["sizes"]))
    typer.echo(f"pair store {out}: {meta['pairs']:,} pairs of {meta['proteins']:,} proteins")


@pairs_app.command("from-lmdb")
def pairs_from_lmdb(
    lmdb_path: Annotated[Path, typer.Argument(help="PEER/TAPE PPI LMDB (primary_1, primary_2, interaction).")],
    out: option("out", Path, note="a pair table (.parquet, .tsv or .csv) or a directory (DIR/pairs.parquet)."),
    split: option("split", note="The name these pairs get: train, dev or test.") = "train",
    strict: StrictOpt = False,
) -> None:
    """Convert a PEER HumanPPI/YeastPPI LMDB split into a protlm pair table (no code is unpickled)."""
    from protlm.io import SkipReport
    from protlm.pairs import write_pairs
    from protlm.pairs.lmdb_ppi import read_ppi_lmdb
    from protlm.pairs.table import SPLITS, pair_table_path

    if split not in SPLITS:
        raise ProtlmError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    out = pair_table_path(out)  # before the LMDB is read: a name of no known format is refused first
    report = SkipReport(str(lmdb_path))
    n = write_pairs(read_ppi_lmdb(lmdb_path, split, residue_policy(strict, None), report), out)
    typer.echo(report.summary(), err=True)
    typer.echo(f"{n:,} pairs written to {out}")


@pairs_app.command("stats")
def pairs_stats_cmd(
    path: Annotated[str, typer.Argument(help="Pair directory (with pairs.parquet), pair table, or 'builtin'.")],
    tokenizer: option("tokenizer", Path | None, note="Also report token lengths.") = None,
) -> None:
    """Label balance, split sizes and length distribution of a pair set."""
    from protlm.pairs import builtin_pairs, pairs_stats
    from protlm.tokenization import load_tokenizer

    tok = load_tokenizer(tokenizer) if tokenizer else None
    typer.echo(json.dumps(pairs_stats(builtin_pairs() if path == "builtin" else path, tok), indent=2))
