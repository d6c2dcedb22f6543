"""`protlm variants benchmark`: every assay of a ProteinGym reference file, scored and measured.

The reference file is ProteinGym's (`DMS_substitutions.csv`): one row per assay with `DMS_id`,
`DMS_filename` (a file in --dms-dir), `target_seq` (the wild type) and `UniProt_ID`; `coarse_selection_type`
is used when present. The mean over assays is taken per UniProt ID first, then over proteins, as ProteinGym
averages; with selection types, ProteinGym's headline average is given too (per protein and selection
type, then per selection type, then their mean). Outputs in --out: `scores/DMS_ID.csv`, `per_assay.csv`,
`summary.json` and `spearman.png`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protlm.errors import InputError, ProtlmError
from protlm.io.tables import iter_table_rows, table_header
from protlm.variants.assay import clean_wt, read_assay, write_frame, write_scored
from protlm.variants.metrics import jsonable
from protlm.variants.run import score_assay
from protlm.variants.scorer import VariantScorer

REFERENCE = ["DMS_id", "DMS_filename", "target_seq", "UniProt_ID"]
SELECTION = "coarse_selection_type"
METRICS = ("spearman", "auc", "mcc", "ndcg", "top10_recall")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,199}")  # a file name, never a path


@dataclass(frozen=True)
class Entry:
    """One assay of the reference file."""

    dms_id: str
    filename: str
    target_seq: str
    uniprot: str
    selection: str = ""


def read_reference(path: str | Path) -> list[Entry]:
    """The assays of a ProteinGym reference file; DMS_id and DMS_filename must be plain file names."""
    columns = REFERENCE + ([SELECTION] if SELECTION in table_header(path) else [])
    entries = []
    for line, row in iter_table_rows(path, columns):
        for key in ("DMS_id", "DMS_filename"):
            if not _NAME.fullmatch(row[key]) or ".." in row[key]:
                raise InputError(path, f"{key} {row[key][:60]!r} is not a plain file name", line=line)
        wt = clean_wt(row["target_seq"], f"{path} line {line} (record {row['DMS_id']}): target_seq")
        entries.append(Entry(row["DMS_id"], row["DMS_filename"], wt, row["UniProt_ID"], row.get(SELECTION, "")))
    if not entries:
        raise InputError(path, "no assays (a header and no rows)")
    return entries


def run_benchmark(scorer: VariantScorer, reference, dms_dir, out, echo: Callable[[str], None] | None = None) -> dict:
    """Score every assay of `reference` (files in `dms_dir`), write the outputs to `out`; the summary.
    `echo` receives a line per assay."""
    import pandas as pd

    from protlm.io.atomic import output_dir, write_json

    entries = read_reference(reference)
    missing = [e.filename for e in entries if not (Path(dms_dir) / e.filename).is_file()]
    if missing:
        raise ProtlmError(f"{dms_dir}: {len(missing)} DMS file(s) of {reference} missing, e.g. {missing[0]}")
    out = output_dir(out)
    rows = []
    for k, e in enumerate(entries):
        assay = read_assay(Path(dms_dir) / e.filename, e.target_seq)
        if assay.dms_score is None:
            raise InputError(assay.path, "no DMS_score column: a benchmark needs measured fitness")
        scored = score_assay(scorer, assay)
        write_scored(scored.assay, scored.scores, output_dir(out / "scores") / f"{e.dms_id}.csv")
        rows.append({"DMS_id": e.dms_id, "UniProt_ID": e.uniprot, SELECTION: e.selection,
                     **scored.metrics, "seconds": round(scored.seconds, 2)})  # fmt: skip
        (echo or _quiet)(f"[{k + 1}/{len(entries)}] {e.dms_id}: spearman {scored.metrics['spearman']:.3f} "
             f"({scored.metrics['n']:,} variants, {scored.seconds:.1f} s)")  # fmt: skip
    table = pd.DataFrame(rows)
    summary = {"strategy": scorer.strategy, "precision": scorer.precision, "assays": len(table), "proteins": int(table["UniProt_ID"].nunique()),
               **summarize(table)}  # fmt: skip
    write_frame(table.round(4), out / "per_assay.csv")
    write_json(out / "summary.json", summary)
    plot_spearman(table, out / "spearman.png")
    return summary


def summarize(table) -> dict:
    """Per metric: the mean over assays, over proteins (per UniProt ID first) and ProteinGym's average."""
    out = {}
    for metric in METRICS:
        if metric not in table or table[metric].isna().all():
            continue
        per_protein = table.groupby("UniProt_ID")[metric].mean()
        entry = {"mean_over_assays": table[metric].mean(), "mean_over_proteins": per_protein.mean()}
        if (table[SELECTION] != "").all():
            by_type = table.groupby(["UniProt_ID", SELECTION])[metric].mean().groupby(SELECTION).mean()
            entry["proteingym_average"] = by_type.mean()
        out[metric] = jsonable({k: round(float(v), 4) for k, v in entry.items()})
    return out


def summary_lines(summary: dict) -> list[str]:
    """The summary as an aligned text table."""
    cols = ["mean_over_assays", "mean_over_proteins", "proteingym_average"]
    lines = [f"{'metric':<14}" + "".join(f"{c:>20}" for c in cols)]
    for metric in METRICS:
        if metric in summary:
            cells = [summary[metric].get(c) for c in cols]
            lines.append(f"{metric:<14}" + "".join(f"{'n/a' if v is None else f'{v:.3f}':>20}" for v in cells))
    return lines


def plot_spearman(table, path: Path) -> Path:
    """A bar per assay, sorted, with the per-protein mean as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from protlm.io.atomic import save_figure

    ordered = table.sort_values("spearman")
    fig, ax = plt.subplots(figsize=(max(6, 0.12 * len(ordered) + 2), 4), dpi=120)
    ax.bar(range(len(ordered)), ordered["spearman"].fillna(0), color="C0")
    mean = table.groupby("UniProt_ID")["spearman"].mean().mean()
    if not math.isnan(mean):
        ax.axhline(mean, color="C1", lw=1, label=f"mean over proteins {mean:.3f}")
        ax.legend(loc="upper left")
    if len(ordered) <= 40:
        ax.set_xticks(range(len(ordered)), ordered["DMS_id"], rotation=90, fontsize=6)
    ax.set_ylabel("Spearman")
    ax.set_xlabel("assay")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def _quiet(line: str) -> None:
    return None
