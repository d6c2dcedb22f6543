"""`protlm variants score|benchmark`: zero-shot variant effect scores over `protlm.variants`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from protlm.cli.options import DeviceOpt, option

variants_app = typer.Typer(
    help="Zero-shot variant effect scores from masked LMs on ProteinGym substitution files (docs/variants.md).",
    no_args_is_help=True,
)

ModelOpt = option("model", note="A pre-trained masked LM.")
StrategyOpt = option("strategy")
ContextOpt = option("context", int)
BatchOpt = option("tokens_per_batch", int)
WindowOpt = option("max_tokens", int | None, note="The window over long proteins (default: the model's positions, "
                   "at most 2,048 for dense attention).")  # fmt: skip
PrecisionOpt = option("precision")


def _scorer(model: str, device: str, **options):
    from protlm.variants.run import load_scorer
    from protlm.variants.scorer import ScoreOptions

    return load_scorer(model, device, ScoreOptions(**options))


@variants_app.command("score")
def score_cmd(
    input: Annotated[
        Path,
        typer.Argument(
            help="DMS file (CSV / TSV / Parquet): mutant, mutated_sequence, optional DMS_score and DMS_score_bin."
        ),
    ],  # fmt: skip
    model: ModelOpt,
    out: option("out", Path, note="CSV / TSV / Parquet (by extension): every input column plus score."),
    strategy: StrategyOpt = "masked-marginal",
    wt: Annotated[str | None, typer.Option("--wt", help="The wild type (default: from mutated_sequence).")] = None,
    wt_fasta: Annotated[Path | None, typer.Option("--wt-fasta", help="The wild type as a one-record FASTA.")] = None,
    metrics: Annotated[Path | None, typer.Option("--metrics", help="Metrics JSON (needs DMS_score).")] = None,
    context: ContextOpt = 2,
    tokens_per_batch: BatchOpt = 16384,
    max_tokens: WindowOpt = None,
    precision: PrecisionOpt = "auto",
    device: DeviceOpt = "auto",
) -> None:
    """Score every variant of a deep mutational scan; print Spearman, AUC, MCC, NDCG and top-10% recall."""
    from protlm.variants.assay import read_assay
    from protlm.variants.run import metrics_line, score_file, wild_type

    assay = read_assay(input, wild_type(wt, wt_fasta))  # before the model loads: bad input is named at once
    scorer = _scorer(model, device, strategy=strategy, context=context, tokens_per_batch=tokens_per_batch,
                     max_tokens=max_tokens, precision=precision)  # fmt: skip
    scored = score_file(scorer, assay, out, metrics)
    n = len(scored.scores)
    typer.echo(f"{n:,} variants scored ({scored.strategy}, {scorer.precision} on {scorer.passes.device}) in "
               f"{scored.seconds:.1f} s, written to {out}")  # fmt: skip
    if scored.metrics is not None:
        typer.echo(metrics_line(scored.metrics))
    if metrics is not None:
        typer.echo(f"metrics written to {metrics}")


@variants_app.command("benchmark")
def benchmark_cmd(
    reference: option("reference", Path, note="ProteinGym's reference file (DMS_id, DMS_filename, target_seq, ...)."),
    dms_dir: Annotated[Path, typer.Option(help="The folder of the DMS files the reference names.")],
    model: ModelOpt,
    out: option("out", Path, note="a directory: scores/, per_assay.csv, summary.json, spearman.png."),
    strategy: StrategyOpt = "masked-marginal",
    context: ContextOpt = 2,
    tokens_per_batch: BatchOpt = 16384,
    max_tokens: WindowOpt = None,
    precision: PrecisionOpt = "auto",
    device: DeviceOpt = "auto",
) -> None:
    """Score every assay of a reference file; per-assay metrics, means per protein first, a Spearman plot."""
    from protlm.variants.benchmark import run_benchmark, summary_lines

    scorer = _scorer(model, device, strategy=strategy, context=context, tokens_per_batch=tokens_per_batch,
                     max_tokens=max_tokens, precision=precision)  # fmt: skip
    summary = run_benchmark(scorer, reference, dms_dir, out, echo=lambda line: typer.echo(line, err=True))
    typer.echo(
        f"{summary['assays']} assays, {summary['proteins']} proteins ({summary['strategy']}, {scorer.precision})"
    )
    for line in summary_lines(summary):
        typer.echo(line)
    typer.echo(f"written to {out} (per_assay.csv, summary.json, spearman.png, scores/)")
