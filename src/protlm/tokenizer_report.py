"""Compression report of a protein tokenizer: how much shorter BPE makes sequences.

Token counts exclude the two special tokens `<s>`, `</s>` so that they compare directly with
residue counts (one token per residue = the `char` baseline). "Over N" shares use the same
counts; a model with N positions holds N - 2 content tokens.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from protlm.io.atomic import save_figure

THRESHOLDS = (512, 1000, 2048)


@dataclass
class CompressionReport:
    """Length statistics of one tokenizer on one set of sequences."""

    n_sequences: int
    n_residues: int
    n_tokens: int
    mean_residues: float
    mean_tokens: float
    residues_per_token: float
    reduction_pct: float  # % fewer tokens than one token per residue
    over_tokens_pct: dict[int, float] = field(default_factory=dict)  # share of sequences over N tokens
    over_residues_pct: dict[int, float] = field(default_factory=dict)  # same under the char baseline
    residues_per_second: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        lines = [
            f"sequences            {self.n_sequences:,}",
            f"mean length          {self.mean_residues:.1f} residues -> {self.mean_tokens:.1f} tokens",
            f"residues per token   {self.residues_per_token:.3f}",
            f"length reduction     {self.reduction_pct:.2f}% vs one token per residue",
        ]
        for n in THRESHOLDS:
            lines.append(
                f"over {n:>5,} tokens     {self.over_tokens_pct[n]:6.2f}% (BPE)  {self.over_residues_pct[n]:6.2f}% (characters)"
            )
        lines.append(f"encode throughput    {self.residues_per_second:,.0f} residues/s")
        return "\n".join(lines)


def token_lengths(tokenizer, sequences: list[str], batch_size: int = 4096) -> tuple[np.ndarray, float]:
    """Content-token length per sequence and the encode time in seconds (Rust batch encoder)."""
    backend = tokenizer.backend
    lengths = np.empty(len(sequences), dtype=np.int64)
    start = time.perf_counter()
    for i in range(0, len(sequences), batch_size):
        enc = backend.encode_batch(sequences[i : i + batch_size], add_special_tokens=False)
        lengths[i : i + len(enc)] = [len(e.ids) for e in enc]
    return lengths, time.perf_counter() - start


def compression_report(tokenizer, sequences: list[str]) -> tuple[CompressionReport, np.ndarray, np.ndarray]:
    """Measure `tokenizer` on `sequences`; also return the token and residue length arrays."""
    if not sequences:
        raise ValueError("no sequences to measure")
    tok_len, seconds = token_lengths(tokenizer, sequences)
    res_len = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    n_res, n_tok = int(res_len.sum()), int(tok_len.sum())
    report = CompressionReport(
        n_sequences=len(sequences),
        n_residues=n_res,
        n_tokens=n_tok,
        mean_residues=float(res_len.mean()),
        mean_tokens=float(tok_len.mean()),
        residues_per_token=n_res / n_tok,
        reduction_pct=100.0 * (1.0 - n_tok / n_res),
        over_tokens_pct={n: 100.0 * float((tok_len > n).mean()) for n in THRESHOLDS},
        over_residues_pct={n: 100.0 * float((res_len > n).mean()) for n in THRESHOLDS},
        residues_per_second=n_res / max(seconds, 1e-9),
    )
    return report, tok_len, res_len


def plot_lengths(tok_len: np.ndarray, res_len: np.ndarray, out: str | Path, title: str = "") -> Path:
    """Histogram PNG of sequence lengths in tokens vs residues (log-spaced bins)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    hi = max(int(res_len.max()), int(tok_len.max()), 2)
    bins = np.logspace(0, np.log10(hi + 1), 80)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.hist(res_len, bins=bins, alpha=0.55, label=f"characters (mean {res_len.mean():.0f})")
    ax.hist(tok_len, bins=bins, alpha=0.55, label=f"tokens (mean {tok_len.mean():.0f})")
    for n in THRESHOLDS:
        ax.axvline(n, color="grey", lw=0.8, ls="--")
        ax.text(n, ax.get_ylim()[1] * 0.95, f" {n}", fontsize=7, color="grey", va="top")
    ax.set_xscale("log")
    ax.set_xlabel("sequence length")
    ax.set_ylabel("sequences")
    ax.set_title(title or "sequence length: characters vs tokens")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)
    return out
