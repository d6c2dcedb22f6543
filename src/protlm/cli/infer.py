"""`protlm embed`, `predict`, `fill`: inference commands over `protlm.api`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from protlm.cli.options import DeviceOpt, IdColOpt, MaxLenOpt, SeqColOpt, StrictOpt, option, residue_policy
from protlm.errors import ProtlmError


def embed_cmd(
    input: Annotated[
        Path,
        typer.Argument(help="FASTA (chains joined by ':' = one assembly), or TSV/CSV/Parquet with --id-col/--seq-col."),
    ],
    model: option("model", note="protlm pretrain output, a fine-tuned model/, or e.g. facebook/esm2_t6_8M_UR50D."),
    out: option("out", Path, note="a .parquet, .npz or .h5 file (format by extension)."),
    pool: Annotated[
        list[str] | None, typer.Option(help="mean, cls or residue (per-residue vectors); repeat for several.")
    ] = None,
    layers: Annotated[str, typer.Option(help="Hidden states, e.g. -1 or -1,-4 (0 = embeddings).")] = "-1",
    tokens_per_batch: option("tokens_per_batch", int | None, note="Default: 16,384.") = None,
    stride: Annotated[
        int | None, typer.Option(help="Tokens between windows over long proteins (default half a window).")
    ] = None,
    max_tokens: option(
        "max_tokens", int | None, note="A window (default: the model's positions, at most 2,048 for dense attention)."
    ) = None,  # fmt: skip
    precision: option("precision", str | None) = None,
    id_col: IdColOpt = "id",
    seq_col: SeqColOpt = "sequence",
    strict: StrictOpt = False,
    max_length: MaxLenOpt = None,
    device: DeviceOpt = "auto",
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue an interrupted embed of the same input into "
            "the same --out (the records it finished are kept and skipped).",
        ),
    ] = False,
) -> None:
    """Embed proteins of any length: pooled or per-residue vectors, streamed to Parquet / NPZ / HDF5; an interrupted
    run continues with --resume."""
    from protlm import __version__ as protlm_version
    from protlm.api import load
    from protlm.embed import EmbedOptions
    from protlm.io import SkipReport
    from protlm.io.inference import read_inputs
    from protlm.ranks import Ranks

    try:
        layer_ids = tuple(int(x) for x in layers.split(","))
    except ValueError:
        raise ProtlmError(f"--layers {layers!r}: use e.g. -1 or -1,-4") from None
    given = {"pools": tuple(pool) if pool else None, "layers": layer_ids, "tokens_per_batch": tokens_per_batch,
             "stride": stride, "max_tokens": max_tokens, "precision": precision}  # fmt: skip
    options = {k: v for k, v in given.items() if v is not None}  # unset: EmbedOptions' defaults
    keys = EmbedOptions(**options).keys()
    ranks = Ranks.from_env()
    lm = load(model, ranks.device(device))
    embedder = lm.embedder(**options)
    meta = {"model": str(model), "precision": embedder.precision, "device": str(lm.device), "outputs": keys,
            "protlm": protlm_version}  # fmt: skip
    report = SkipReport(str(input))
    records = read_inputs(input, residue_policy(strict, max_length), report, id_col=id_col, seq_col=seq_col)
    if ranks.world == 1:
        settings = {**meta, "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
                    "input": str(Path(input).resolve()), "strict": strict, "max_length": max_length}  # fmt: skip
        n = _embed_resumable(embedder, records, keys, out, report, lm.device, meta, (settings, resume))
    elif resume:
        raise ProtlmError("--resume is for one process (under torchrun the ranks' spools are not kept)")
    else:  # torchrun: every rank embeds its share into a spool; rank 0 merges them in input order
        n = _embed_ranked(ranks, embedder, records, keys, out, report, lm.device, meta)
    if ranks.main:
        typer.echo(report.summary(), err=True)
        typer.echo(f"{n:,} embeddings ({', '.join(keys)}; {embedder.precision} on {lm.device}) written to {out}")


def _embed_ranked(ranks, embedder, records, keys: list[str], out: Path, report, device, meta: dict) -> int:
    """`protlm embed` under torchrun (`protlm.ranks`): the records of this rank into its spool, then
    rank 0 merges the spools into `out` in input order; the count written."""
    from protlm.io.embeddings import SpoolWriter, check_output, open_writer, read_spool
    from protlm.ranks import interleave, run_sharded

    counted = [0]

    def work(spool: Path) -> None:
        shard = embedder.embed(ranks.mine(records))
        counted[0] = _write_embeddings(shard, SpoolWriter(spool, keys), report, device)

    def merge(spools: list[Path]) -> None:
        merged = interleave([read_spool(p) for p in spools])
        counted[0] = _write_embeddings(merged, open_writer(out, keys, meta), None, None)

    check_output(out)  # before any work: a bad --out is named now, not after the ranks finished
    run_sharded(ranks, out, device, work, merge)
    return counted[0]


def _embed_resumable(embedder, records, keys: list[str], out: Path, report, device, meta: dict, resuming) -> int:
    """`protlm embed` in one process: chunk by chunk into finished part files (`io/partial.py`), then merged
    into `out`; an interrupted run leaves its parts for `--resume`. The count written."""
    from protlm.io.embeddings import check_output, open_writer
    from protlm.io.partial import PartialOutput
    from protlm.progress import progress

    check_output(out)
    settings, resume = resuming
    partial = PartialOutput(out, keys, settings, resume)
    todo = partial.todo(records)  # a mismatch keeps the parts: the error says what to do with them
    try:
        if partial.n_done:
            typer.echo(f"resuming: {partial.n_done:,} records already embedded in {partial.dir}", err=True)
        if partial.replaced:
            typer.echo(f"an interrupted embed's records in {partial.dir} were replaced: this run starts over "
                       "(--resume continues one)", err=True)  # fmt: skip
        with progress(unit="records", desc="embed", initial=partial.n_done) as bar:
            for chunk in partial.chunks(todo, embedder.opt.chunk):
                writer = partial.new_part()
                _write_all(embedder.embed(chunk), writer, lambda emb: bar.update(1))
        report.require_used()
    except ProtlmError:  # bad input: what was embedded is not what the fixed input will be
        partial.remove()
        raise
    except KeyboardInterrupt:
        typer.echo(f"protlm: the records embedded so far are kept in {partial.dir}: --resume continues", err=True)
        raise
    n = _write_embeddings(partial.merged(), open_writer(out, keys, meta), None, None)
    partial.remove()
    return n


def _write_all(embeddings, writer, each=lambda emb: None) -> int:
    """Stream `embeddings` into `writer` and close it; on any error or interrupt it is aborted (no file under
    its final name). The count written."""
    n = 0
    try:
        for emb in embeddings:
            writer.write(emb)
            each(emb)
            n += 1
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return n


def _write_embeddings(embeddings, writer, report, device) -> int:
    """Stream `embeddings` into `writer` (atomic: aborted on any error or interrupt); the count written.
    `report` (when given) must have used a record; `device` names the progress bar's work."""
    from protlm.progress import progress

    def checked():
        yield from embeddings
        if report is not None:  # no records at all: no file under the final name
            report.require_used()

    with progress(unit="residues", desc="embed" if device is not None else "merge") as bar:
        return _write_all(checked(), writer, lambda emb: bar.update(emb.length))


def predict_cmd(
    input: Annotated[
        Path,
        typer.Argument(
            help="FASTA or id,sequence table; pair / assembly tasks: chains joined by ':', or a pair table "
            "id_a,id_b,seq_a,seq_b."
        ),
    ],
    model: option("model", note="A fine-tuned model/ (OUT/seed-K/model of protlm finetune)."),
    out: option("out", Path, note="a TSV file."),
    strict: StrictOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Predict with a fine-tuned model: TSV of id, label and class probabilities (residue tasks: states; multi-label:
    the label set and per-label probabilities; regression: the value)."""
    from protlm.api import load
    from protlm.io import SkipReport, read_sequences
    from protlm.ranks import Ranks

    ranks = Ranks.from_env()
    lm = load(model, ranks.device(device))
    spec = lm.task
    report = SkipReport(str(input))
    policy = residue_policy(strict, None)
    if spec.kind.multi_part:
        from protlm.io import is_fasta
        from protlm.io.inference import read_inputs
        from protlm.io.tables import table_header
        from protlm.pairs import read_pairs

        if not is_fasta(input) and "id_a" in table_header(input):
            inputs = list(read_pairs(input, policy, report))
        else:  # FASTA or id,sequence table with chains joined by ':'
            inputs = list(read_inputs(input, policy, report))
    else:
        inputs = list(read_sequences(input, policy, report))
    if ranks.main:
        typer.echo(report.summary(), err=True)
    report.require_used()
    header = spec.kind.header(tuple(lm.info["labels"]))
    if ranks.world == 1:
        preds = lm.predict(inputs)
        _write_lines(out, [header, *(spec.kind.row(p.id, p.label, p.probabilities) for p in preds)])
        n = len(preds)
    else:  # torchrun: every rank predicts its share into a spool; rank 0 merges them in input order
        n = _predict_ranked(ranks, lm, inputs, header, out)
    if ranks.main:
        typer.echo(f"{n:,} predictions ({spec.name}) written to {out}")


def _write_lines(path: Path, lines) -> None:
    from protlm.io.atomic import atomic_open

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        fh.writelines(lines)


def _predict_ranked(ranks, lm, inputs: list, header: str, out: Path) -> int:
    """`protlm predict` under torchrun: this rank's inputs into its spool (one TSV row each), then rank 0
    writes the header and the spools' rows round-robin, in input order; the count written."""
    from protlm.ranks import interleave, run_sharded

    def work(spool: Path) -> None:
        kind = lm.task.kind
        _write_lines(spool, [kind.row(p.id, p.label, p.probabilities) for p in lm.predict(list(ranks.mine(inputs)))])

    def merge(spools: list[Path]) -> None:
        parts = [iter(p.read_text(encoding="utf-8").splitlines(keepends=True)) for p in spools]
        _write_lines(out, [header, *interleave(parts)])

    run_sharded(ranks, out, lm.device, work, merge)
    return len(inputs)


def fill_cmd(
    text: Annotated[
        str, typer.Argument(help="A sequence with <mask> at the residues to predict (any model; [MASK] too).")
    ],
    model: option("model", note="A masked LM."),
    top_k: option("top_k", int, note="Candidates per mask.") = 5,
    device: DeviceOpt = "auto",
) -> None:
    """Masked-residue prediction: the top-k tokens (residue strings) for every <mask>, with their
    probabilities to three significant digits (e.g. 0.412, 0.000213, 1.2e-05)."""
    from protlm.api import load

    for k, candidates in enumerate(load(model, device).fill(text, top_k)):
        typer.echo(f"mask {k + 1}: " + "  ".join(f"{tok} {probability_text(p)}" for tok, p in candidates))


def probability_text(p: float) -> str:
    """Three significant digits, not three decimals: over a 10k-token BPE vocabulary every candidate's
    probability is below 0.001, and `0.000` for all of them would hide their order."""
    return f"{p:.3g}"
