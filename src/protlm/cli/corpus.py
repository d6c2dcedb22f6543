"""`protlm corpus prepare|index|info`: the sharded, memory-mapped corpus store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from protlm.cli.options import (
    IdColOpt,
    MaxLenOpt,
    SeqColOpt,
    StrictOpt,
    TokenizerOpt,
    WorkersOpt,
    option,
    residue_policy,
)

corpus_app = typer.Typer(help="Prepare corpora once into sharded token stores that training memory-maps.",
                         no_args_is_help=True)  # fmt: skip


@corpus_app.command("prepare")
def prepare_cmd(
    inputs: Annotated[
        list[str], typer.Argument(help="FASTA / TSV / CSV / Parquet files (.gz too), globs, or scl2205[:SPLIT].")
    ],
    tokenizer: TokenizerOpt,
    out: option("out", Path, note="a store directory (new, or a store to resume)."),
    workers: WorkersOpt = 1,
    shard: Annotated[
        str | None,
        typer.Option(
            help="I/N: write only chunks k with k % N == I (one part of a multi-machine run); then `protlm corpus index`."
        ),
    ] = None,
    shard_size: Annotated[int, typer.Option(help="Input records per shard.")] = 100_000,
    id_col: IdColOpt = "id",
    seq_col: SeqColOpt = "sequence",
    strict: StrictOpt = False,
    max_length: MaxLenOpt = None,
) -> None:
    """Tokenize a corpus once into a store of shards (token ids, offsets, lengths, ids, held-out keys)."""
    from protlm.store import Inputs, parse_shard, prepare_store

    result = prepare_store(Inputs.expand(inputs, id_col, seq_col), tokenizer, out, residue_policy(strict, max_length),
                           workers=workers, shard=parse_shard(shard), shard_size=shard_size,
                           log=lambda s: typer.echo(s, err=True))  # fmt: skip
    typer.echo(f"{result['shards_written']:,} shards written, {result['shards_kept']:,} kept from an earlier run, "
               f"{result['chunks']:,} chunks in the corpus", err=True)  # fmt: skip
    if result["indexed"]:
        _print_summary(out, result["index"])
    else:
        typer.echo(f"part {shard} done; when every part is done: protlm corpus index {out}")


@corpus_app.command("index")
def index_cmd(
    store: Annotated[Path, typer.Argument(help="Store directory whose parts have all been prepared.")],
) -> None:
    """Check that every shard is present and write the store's index (after `prepare --shard I/N` runs)."""
    from protlm.store import index_store

    _print_summary(store, index_store(store))


@corpus_app.command("info")
def info_cmd(store: Annotated[Path, typer.Argument(help="Corpus store or pair store directory.")]) -> None:
    """Counts, tokenizer and skip report of a finished corpus or pair store (JSON)."""
    from protlm.store import TokenStore
    from protlm.store.pairs import PairStore, is_pair_store

    typer.echo(json.dumps(PairStore(store).meta if is_pair_store(store) else TokenStore(store).meta, indent=2))


def _print_summary(out: Path, meta: dict) -> None:
    from protlm.io import SkipReport

    inputs = ", ".join(i["spec"] for i in meta["fingerprint"]["inputs"])  # the skip report names the input files
    typer.echo(SkipReport.from_dict(inputs, meta["skip_report"]).summary(), err=True)
    typer.echo(f"store {out}: {meta['usable_records']:,} proteins, {meta['tokens']:,} tokens, "
               f"{meta['residues']:,} residues in {meta['shards']:,} shards")  # fmt: skip
