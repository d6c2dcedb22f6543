"""Option types shared by several commands, and the residue policy they build."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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


def residue_policy(strict: bool, max_length: int | None):
    from protlm.io import ResiduePolicy

    return ResiduePolicy(strict=strict, max_length=max_length)


SequencesOpt = Annotated[
    str | None,
    typer.Option(help="assembly: FASTA/table of the proteins named in a 'members' column (';'-joined ids)."),
]


# Large backbones on small machines (pretrain and finetune).
LoraRankOpt = Annotated[
    int | None,
    typer.Option(
        help="Train LoRA adapters of this rank (peft) instead of all weights; saved in "
        "model/adapter/ and merged into model/."
    ),
]
LoraAlphaOpt = Annotated[float | None, typer.Option(help="LoRA scale numerator (default 2 x rank).")]
LoraTargetsOpt = Annotated[
    str | None, typer.Option(help="Comma-separated linear layers that get adapters (default query,value).")
]
KernelsOpt = Annotated[
    str | None,
    typer.Option(help="on (default): chunked attention dropout and cheaper dropout masks on the CPU; off: plain HF."),
]
CheckpointingOpt = Annotated[
    bool, typer.Option("--gradient-checkpointing", help="Recompute activations in the backward pass: less memory.")
]
