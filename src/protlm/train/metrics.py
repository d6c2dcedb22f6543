"""Run metrics: `metrics.jsonl` (one JSON object a line), TensorBoard, and the loss-curve PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path

from protlm.io.atomic import open_no_follow, save_figure, write_text
from protlm.io.structured import parse_json


class MetricsLogger:
    """Appends metrics to `run_dir/metrics.jsonl` and TensorBoard (`run_dir/tensorboard`)."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:  # tensorboard is optional at run time; metrics.jsonl is always written
                self._tb = None

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        with open_no_follow(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._tb is not None:
            step = record.get("step", 0)
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [parse_json(text, path, i) for i, text in enumerate(path.read_text().splitlines(), 1) if text.strip()]


def truncate_metrics(run_dir: Path, after_step: int) -> None:
    """Drop records past `after_step` (a resumed run re-logs them), keeping the file consistent."""
    path = Path(run_dir) / "metrics.jsonl"
    if path.is_file():
        keep = [r for r in read_metrics(run_dir) if r.get("step", 0) <= after_step]
        write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


def plot_run(run_dir: Path, out: Path | None = None) -> Path:
    """Training loss and held-out loss / perplexity against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from protlm.errors import ProtlmError

    records = read_metrics(run_dir)
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval_loss" in r]
    if not train and not evals:
        raise ProtlmError(f"{run_dir}: no metrics.jsonl records to plot")
    out = Path(out) if out else Path(run_dir) / "loss.png"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    if train:
        ax1.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1, label="train MLM loss")
    if evals:
        ax1.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="held-out MLM loss")
        ax2.plot([r["step"] for r in evals], [r["eval_ppl"] for r in evals], "o-", color="C1")
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy (nats)")
    ax1.legend()
    ax2.set_xlabel("step")
    ax2.set_ylabel("held-out perplexity")
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)
    return out
