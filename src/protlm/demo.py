"""`make demo`: the main job end to end on the built-in data, sized for a 2-core CPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from protlm.corpora import open_corpus
from protlm.io import SkipReport
from protlm.tokenization import DEFAULT_KIND, DEFAULT_VOCAB_SIZE, train_from_corpus
from protlm.tokenizer_report import compression_report, plot_lengths


def run_demo(out: str | Path, echo: Callable[[str], None] = print) -> None:
    """Train the default tokenizer on SCL2205 train+eval and report its compression on heldout."""
    out = Path(out)
    t0 = time.perf_counter()
    train_skips = SkipReport("scl2205 train+eval")
    tok = train_from_corpus(
        open_corpus("scl2205"), out / "tokenizer", DEFAULT_KIND, DEFAULT_VOCAB_SIZE, report=train_skips
    )
    echo(train_skips.summary())
    echo(
        f"[1/1] {DEFAULT_KIND} tokenizer ({len(tok):,} tokens) trained in {time.perf_counter() - t0:.1f}s -> {out / 'tokenizer'}"
    )
    held_skips = SkipReport("scl2205 heldout")
    heldout = list(open_corpus("scl2205:heldout").sequences(report=held_skips))
    report, tok_len, res_len = compression_report(tok, heldout)
    echo(f"\nCompression on SCL2205 heldout ({len(heldout):,} proteins never used for training):")
    echo(report.to_text())
    png = plot_lengths(tok_len, res_len, out / "token_lengths.png", "SCL2205 heldout: characters vs BPE tokens")
    echo(f"\nlength histogram: {png}")
