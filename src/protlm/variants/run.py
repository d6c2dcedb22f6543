"""`protlm variants score`: a model, a DMS file -> the scored table and its metrics (what the CLI calls)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protlm.errors import ProtlmError
from protlm.variants.assay import Assay, clean_wt, write_scored
from protlm.variants.metrics import assay_metrics, jsonable
from protlm.variants.scorer import ScoreOptions, VariantScorer


@dataclass
class Scored:
    assay: Assay
    scores: np.ndarray  # (n,) higher = predicted fitter
    strategy: str  # the strategy used (span where tokens span several residues)
    seconds: float
    metrics: dict | None = None  # when the assay has DMS_score


def load_scorer(model: str, device: str = "auto", options: ScoreOptions = ScoreOptions()) -> VariantScorer:
    """The scorer of a pre-trained masked LM (a directory or an HF Hub id) on `device`."""
    from protlm.device import resolve_device
    from protlm.models.loading import open_model

    where = resolve_device(device)  # first: a device this machine lacks is named before any loading
    spec = open_model(model)
    return VariantScorer(spec.masked_lm().to(where).eval(), spec.tokenizer(), options)


def wild_type(wt: str | None, wt_fasta: str | Path | None) -> str | None:
    """The wild type given as --wt or as the one record of --wt-fasta (None: recover it from the rows)."""
    if wt is not None and wt_fasta is not None:
        raise ProtlmError("give --wt or --wt-fasta, not both")
    if wt is not None:
        return clean_wt(wt, "--wt")
    if wt_fasta is None:
        return None
    from protlm.io import read_sequences

    records = list(read_sequences(wt_fasta))
    if len(records) != 1:
        raise ProtlmError(f"{wt_fasta}: --wt-fasta must hold one sequence, it holds {len(records)}")
    return records[0].seq


def score_assay(scorer: VariantScorer, assay: Assay) -> Scored:
    """Score every row of a checked assay (progress in forward passes on stderr), and measure the scores
    when it has DMS_score."""
    from protlm.progress import progress

    start = time.perf_counter()
    with progress(unit="passes", desc=Path(assay.path).name[:40]) as bar:
        scores = scorer.score(assay.wt, assay.variants, bar)
    scored = Scored(assay, scores, scorer.strategy, time.perf_counter() - start)
    if assay.dms_score is not None:
        scored.metrics = assay_metrics(assay.dms_score, scores, assay.dms_bin)
    return scored


def score_file(scorer: VariantScorer, assay: Assay, out, metrics_out=None) -> Scored:
    """`score_assay`, then the table with `score` to `out` and the metrics to `metrics_out`, atomically."""
    from protlm.io.atomic import write_json

    if metrics_out is not None and assay.dms_score is None:
        raise ProtlmError(f"{assay.path}: --metrics needs a DMS_score column")
    scored = score_assay(scorer, assay)
    write_scored(assay, scored.scores, out)
    if metrics_out is not None:
        write_json(metrics_out, {**jsonable(scored.metrics), "strategy": scored.strategy, "precision": scorer.precision,
                                 "file": assay.path})  # fmt: skip
    return scored


def metrics_line(metrics: dict) -> str:
    """`spearman 0.412  n 1,234  auc 0.701 ...` (NaN as n/a)."""
    parts = []
    for k, v in metrics.items():
        text = f"{v:,}" if isinstance(v, int) else "n/a" if v is None or np.isnan(v) else f"{v:.3f}"
        parts.append(f"{k} {text}")
    return "  ".join(parts)
