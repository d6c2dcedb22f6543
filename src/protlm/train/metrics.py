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
    """The records of `run_dir/metrics.jsonl`: JSON objects whose `step` is an integer (InputError naming the
    line otherwise: a run dir may come from someone else)."""
    from protlm.errors import InputError

    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for i, text in enumerate(path.read_text().splitlines(), 1):
        if text.strip():
            record = parse_json(text, path, i)
            if not isinstance(record, dict) or type(record.get("step", 0)) is not int:
                raise InputError(path, "not a metrics record (a JSON object with an integer step)", line=i)
            records.append(record)
    return records


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the records holding `key` as a finite number (others are not plotted)."""
    kept = [r for r in records if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool)
            and math.isfinite(r[key]) and "step" in r]  # fmt: skip
    return [r["step"] for r in kept], [r[key] for r in kept]


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
    train, evals, ppl = _series(records, "loss"), _series(records, "eval_loss"), _series(records, "eval_ppl")
    if not train[0] and not evals[0]:
        raise ProtlmError(f"{run_dir}: no metrics.jsonl records to plot")
    out = Path(out) if out else Path(run_dir) / "loss.png"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    if train[0]:
        ax1.plot(*train, lw=1, label="train MLM loss")
    if evals[0]:
        ax1.plot(*evals, "o-", label="held-out MLM loss")
    if ppl[0]:
        ax2.plot(*ppl, "o-", color="C1")
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
