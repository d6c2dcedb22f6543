"""`protlm attention export|sites` and `protlm contacts [fit]`: attention against real structures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from protlm.cli.options import DeviceOpt, StrictOpt, option
from protlm.errors import ProtlmError

attention_app = typer.Typer(help="Attention maps: export them, score them against binding interfaces.")
contacts_app = typer.Typer(
    help="Contacts from attention (symmetrised, APC, L1 logistic regression): `protlm contacts --model DIR --pdb FILE` "
    "scores a structure; `protlm contacts fit` trains the regression.",
    invoke_without_command=True,
)

ModelOpt = option("model", note="Pre-trained or fine-tuned.")
PdbOpt = option("pdb", list[Path], note="Repeatable.")
CutoffOpt = Annotated[float, typer.Option(help="Interface: any heavy atom within this many Angstrom.")]


def _chains(text: str | None, n: int | None = None) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(c.strip() for c in text.split(",") if c.strip())
    if n is not None and len(names) != n:
        raise ProtlmError(f"--chains {text!r}: give {n} chain names, e.g. A,B")
    return names


def _log(msg: str) -> None:
    typer.echo(msg, err=True)


@attention_app.command("export")
def export_cmd(
    model: ModelOpt,
    out: option("out", Path, note="a .npz file (per input: ID.attention, ID.special, ID.chain_index ...)."),
    fasta: option("fasta", Path | None, note="each record one input (chains of an assembly joined by ':').") = None,
    pair: Annotated[
        tuple[Path, Path] | None, typer.Option(help="Two FASTA files: record k of the first paired with record k.")
    ] = None,
    pdb: option("pdb", Path | None, note="One file: its chains (--chains) as one input.") = None,
    chains: option("chains", str | None, note="Of --pdb (default: all protein chains).") = None,
    half: Annotated[bool, typer.Option("--half", help="Store maps as float16 (default float32).")] = False,
    strict: StrictOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """All layers x heads of attention, mapped from BPE tokens to residues, for sequences, pairs or a complex."""
    import numpy as np

    from protlm.attention.maps import AttentionModel, export
    from protlm.io import ResiduePolicy, SkipReport

    if sum(x is not None for x in (fasta, pair, pdb)) != 1:
        raise ProtlmError("give exactly one input: --fasta FILE, --pair A.fasta B.fasta or --pdb FILE")
    attention_model = AttentionModel(model, device)  # first: a bad model dir fails before inputs are read
    inputs, extra = [], {}
    policy = ResiduePolicy(strict=strict)
    if fasta is not None:
        from protlm.io.inference import read_inputs

        report = SkipReport(str(fasta))
        for rec in read_inputs(fasta, policy, report):
            seqs = tuple(rec.seq.split(":"))
            inputs.append(
                (rec.id, seqs, tuple(f"{rec.id}:{k + 1}" for k in range(len(seqs))) if len(seqs) > 1 else (rec.id,))
            )
        _log(report.summary())
        report.require_used()
    elif pair is not None:
        from protlm.io import read_sequences

        reports = [SkipReport(str(p)) for p in pair]
        a, b = (list(read_sequences(p, policy, r)) for p, r in zip(pair, reports, strict=True))
        for r in reports:
            _log(r.summary())
            r.require_used()
        if len(a) != len(b):
            raise ProtlmError(f"--pair: {pair[0]} has {len(a)} records, {pair[1]} has {len(b)}; they pair by order")
        inputs = [(f"{x.id}|{y.id}", (x.seq, y.seq), (x.id, y.id)) for x, y in zip(a, b, strict=True)]
    else:
        from protlm.attention.structures import interface, read_structure

        st = read_structure(pdb)
        names = _chains(chains) or tuple(st.chains)
        picked = [st.chain(c) for c in names]
        rid = f"{st.id}:{''.join(names)}"
        inputs = [(rid, tuple(c.sequence for c in picked), names)]
        extra[rid] = {"residue_numbers": np.array([n for c in picked for n in c.numbers])}
        if len(picked) == 2:
            ia, ib = interface(*picked)
            extra[rid]["interface"] = np.concatenate([ia, ib])
    export(attention_model, inputs, out, half, extra, source=fasta or (pair and pair[0]) or pdb)
    typer.echo(f"{len(inputs):,} attention maps written to {out}")


def _echo_sites(name: str, s: dict) -> None:
    """The headline (every complex weighs the same), the mean pooled over cases beside it, then each
    complex's mean: one large complex (a ribosome) would otherwise stand for the whole set."""
    auc, p = s["held_out_auc_by_complex"], s["held_out_p_at_k_by_complex"]
    pooled, pooled_p = s["held_out_auc"], s["held_out_p_at_k"]
    typer.echo(f"{name}: {s['selection']} head AUC {auc['mean']:.3f} ± {auc['std']:.3f}, P@k {p['mean']:.3f} "
               f"over {auc['n']} complexes weighted equally; pooled over {s['n_cases']} cases: AUC "
               f"{pooled['mean']:.3f} ± {pooled['std']:.3f}, P@k {pooled_p['mean']:.3f}")  # fmt: skip
    for c in s["per_complex"]:
        typer.echo(f"  {c['complex']}: AUC {c['auc']:.3f}, P@k {c['p_at_k']:.3f} (random {c['random_auc']:.3f}) "
                   f"over {c['n_cases']} cases, head {c['head']}")  # fmt: skip


@attention_app.command("sites")
def sites_cmd(
    model: ModelOpt,
    pdb: PdbOpt,
    chains: option("chains", str | None, note="A pair (default: every pair with an interface).") = None,
    reference: option(
        "reference", str | None, note="a model to compare with, e.g. the same model before pair pre-training."
    ) = None,
    cutoff: CutoffOpt = 5.0,
    top_k: option("top_k", int | None, note="k of precision at k (default: the true interface size).") = None,
    out: option("out", Path | None, note="a JSON file with every per-head and per-case number.") = None,
    report: option("report", Path | None) = None,
    seed: option("seed", int, note="Of the random-score baseline.") = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Per-head ROC-AUC / precision at k of attention-derived scores against true interface residues."""
    from protlm.attention.maps import AttentionModel
    from protlm.attention.sites import analyse
    from protlm.attention.structures import load_structures
    from protlm.io.atomic import write_json

    structures = load_structures(pdb, _log)
    pair = _chains(chains, 2)
    lm = AttentionModel(model, device)
    result = analyse(lm, structures, pair, cutoff, top_k, seed, _log)
    summary = result.summary()
    ref = analyse(AttentionModel(reference, device), structures, pair, cutoff, top_k, seed, _log) if reference else None
    if ref is not None:
        summary["reference"] = ref.summary()
    for name, s in [("model", summary), *([("reference", summary["reference"])] if ref else [])]:
        _echo_sites(name, s)
    r, pooled = summary["random_auc_by_complex"], summary["random_auc"]
    typer.echo(f"random scores: AUC {r['mean']:.3f} ± {r['std']:.3f} by complex, {pooled['mean']:.3f} pooled, "
               f"P@k {summary['random_p_at_k']['mean']:.3f}")  # fmt: skip
    best = summary["best_head_over_all_cases"]
    typer.echo(f"best head over all cases (chosen and scored on the same cases): {best['head']} AUC {best['auc']:.3f}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, summary)
        typer.echo(f"results: {out}")
    if report is not None:
        from protlm.attention.report import sites_report

        sites_report(report, result, lm, {s.id: s for s in structures}, ref)
        typer.echo(f"report: {report}")


@contacts_app.callback()
def contacts_cmd(
    ctx: typer.Context,
    model: option("model", str | None) = None,
    pdb: option("pdb", Path | None, note="One file.") = None,
    fasta: option(
        "fasta", Path | None, note="sequences alone: contact maps without a structure, into --out .npz."
    ) = None,
    chain: Annotated[str | None, typer.Option(help="Chain to score (default: every protein chain).")] = None,
    regression: Annotated[
        Path | None, typer.Option(help="Dir of contact_regression.safetensors (default: the model dir).")
    ] = None,
    out: option("out", Path | None, note="a JSON file with precision at L, L/2, L/5 per range and chain.") = None,
    report: option("report", Path | None) = None,
    device: DeviceOpt = "auto",
) -> None:
    """Contact precision at L, L/2, L/5 (short, medium, long range) of a structure's chains; with
    --fasta, contact maps of sequences alone (no structure), as ESM's contact head gives them."""
    if ctx.invoked_subcommand is not None:
        return
    if model is None or (pdb is None) == (fasta is None):
        raise ProtlmError("give --model DIR and one of --pdb FILE or --fasta FILE (or use `protlm contacts fit`)")
    from protlm.attention import contacts as C
    from protlm.attention.maps import AttentionModel
    from protlm.attention.structures import contact_map, read_structure
    from protlm.io.atomic import write_json

    lm = AttentionModel(model, device)
    reg = C.ContactRegression.load(regression or lm.path)
    note = C.method(lm, reg)
    typer.echo(note, err=True)
    if fasta is not None:
        _contacts_of_sequences(lm, reg, fasta, out)
        return
    st = read_structure(pdb)
    results, shown = {}, []
    for name in [chain] if chain else list(st.chains):
        ch = st.chain(name)
        scores = C.predict(lm, ch, f"{st.id}:{name}", reg)
        true = contact_map(ch)
        results[name] = table = C.precision_table(scores, true)
        shown.append((f"{st.id}:{name}", scores, true, table))
        cells = "  ".join(f"{r} " + "/".join(f"{v:.3f}" for v in t.values()) for r, t in table.items())
        typer.echo(f"{st.id}:{name} (L={len(ch)}) P@L/L2/L5: {cells}")
    if report is not None:
        from protlm.attention.report import contacts_report

        contacts_report(report, st.id, shown, note)
        typer.echo(f"report: {report}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, {"structure": st.path, "model": str(model), "scores": note, "chains": results})
        typer.echo(f"results: {out}")


def _contacts_of_sequences(lm, reg, fasta: Path, out: Path | None) -> None:
    """`contacts --fasta`: every record's (N, N) contact scores into an NPZ (what ESM's contact head
    gives from a sequence); the maps are written, not printed, as there is no structure to score."""
    from protlm.attention import contacts as C
    from protlm.io import ResiduePolicy, SkipReport
    from protlm.io.inference import read_inputs

    if out is None or out.suffix != ".npz":
        raise ProtlmError("contacts --fasta writes maps: give --out FILE.npz")
    report = SkipReport(str(fasta))
    records = list(read_inputs(fasta, ResiduePolicy(), report))
    _log(report.summary())
    report.require_used()
    n = C.write_contact_maps(lm, records, reg, out, fasta)
    typer.echo(f"{n:,} contact maps written to {out} (ID.contacts: N x N scores)")


@contacts_app.command("fit")
def contacts_fit_cmd(
    model: ModelOpt,
    pdb: PdbOpt,
    c: Annotated[float, typer.Option("--c", help="Inverse L1 strength of the logistic regression (ESM: 0.15).")] = 0.15,
    out: option("out", Path | None, note="a directory for the regression (default: the model's).") = None,
    device: DeviceOpt = "auto",
) -> None:
    """Fit the L1 logistic regression of contacts on every protein chain of the given structures."""
    from protlm.attention import contacts as C
    from protlm.attention.maps import AttentionModel
    from protlm.attention.structures import load_structures

    structures = load_structures(pdb, _log)
    chains = [(f"{s.id}:{name}", ch) for s in structures for name, ch in s.chains.items()]
    lm = AttentionModel(model, device)
    reg = C.fit(lm, chains, c)
    path = reg.save(out or lm.path)
    typer.echo(f"fitted on {len(chains)} chains ({reg.meta['n_pairs']:,} pairs, {reg.meta['n_contacts']:,} contacts), "
               f"{reg.meta['nonzero']} of {len(reg.coef)} heads kept: {path}")  # fmt: skip
