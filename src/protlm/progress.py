"""Progress: a redrawn tqdm bar on a terminal; anywhere else (a log file, CI, a pipe) one plain log line
every `PROTLM_PROGRESS_EVERY` seconds (default 30), so logs hold lines, not hundreds of bar redraws."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager


class LogProgress:
    """The part of tqdm's interface protlm uses (update, set_postfix, close, context manager), as log lines."""

    def __init__(
        self, total: int | None = None, initial: int = 0, unit: str = "it", desc: str = "", every: float = 30.0
    ):
        self.total, self.n, self.unit, self.desc, self.every = total, initial, unit, desc, every
        self.start = self.last = time.perf_counter()
        self.start_n, self.postfix = initial, ""

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            self._line(now)

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _line(self, now: float) -> None:
        rate = (self.n - self.start_n) / max(now - self.start, 1e-9)
        done = f"{self.n:,}/{self.total:,}" if self.total else f"{self.n:,}"
        share = f"{self.n / self.total:.0%}, " if self.total else ""
        left = f", ETA {duration(max(self.total - self.n, 0) / rate)}" if self.total and rate > 0 else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc + ': ' if self.desc else ''}{done} {self.unit} ({share}{rate:,.1f} {self.unit}/s{left}{extra})",
              file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        if self.n != self.start_n:
            self._line(time.perf_counter())
            self.start_n = self.n  # a second close prints nothing

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `2h07m`: a time left, as a log line shows it."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress(total: int | None = None, initial: int = 0, unit: str = "it", enabled: bool = True, desc: str = ""):
    """A tqdm bar on a terminal, `LogProgress` elsewhere; disabled (silent) when `enabled` is False."""
    from tqdm.auto import tqdm

    if not enabled or sys.stderr.isatty():
        return tqdm(total=total, initial=initial, unit=unit, desc=desc or None, disable=not enabled,
                    dynamic_ncols=True, mininterval=1.0)  # fmt: skip
    return LogProgress(total, initial, unit, desc, float(os.environ.get("PROTLM_PROGRESS_EVERY", "30")))


@contextmanager
def no_hf_bars():
    """No transformers progress bars ("Loading weights", "Writing model shards") inside the block."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
