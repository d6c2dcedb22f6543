"""What ends a training run: its budgets (`--max-steps`, `--max-epochs`, `--max-time`) and the signals a
scheduler or a user sends (SIGTERM, SIGINT), decided the same way on every rank. The loop (train/loop.py)
asks `stop_reason` before each step; a signal ends it after the step under way, with a checkpoint."""

from __future__ import annotations

import math
import signal
import threading
from typing import Protocol

import torch

from protlm.train.config import TrainConfig


class RunState(Protocol):
    """What a stop is decided on (train/loop.LoopState has it)."""

    step: int
    elapsed: float


class StopSignals:
    """SIGTERM and SIGINT, while training, are noted (`name`) instead of killing the process: the loop finishes
    its step, saves a checkpoint and stops. The handlers before are back after the first signal (a second one
    acts at once) and on exit. Only the main thread can take signals; elsewhere nothing is installed, and a
    signal the process ignores stays ignored."""

    WATCHED = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.name, self.before = "", {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # an ignored signal (nohup, `&`) stays ignored
            watched = [sig for sig in self.WATCHED if signal.getsignal(sig) is not signal.SIG_IGN]
            self.before = {sig: signal.signal(sig, self._note) for sig in watched}
        return self

    def _note(self, signum: int, _frame) -> None:
        self.name = signal.Signals(signum).name
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self.before.items():
            signal.signal(sig, handler)
        self.before = {}

    def __exit__(self, *exc) -> None:
        self._restore()


SIGNALS = tuple(s.name for s in StopSignals.WATCHED)


def stop_reason(state: RunState, cfg: TrainConfig, total: int, max_time: float | None, spe: int, acc,
          signalled: str = "") -> str:  # fmt: skip
    """What ends the run now ('' = nothing): a signal, or a budget; decided identically on every rank (one
    rank signalled or over its time budget stops them all at the same step)."""
    stop = signalled or budget_reached(state, cfg, total, max_time, spe)
    if acc.num_processes > 1:
        flags = torch.tensor([float(stop == "max_time"), float(stop in SIGNALS)], device=acc.device)
        over_time, signals = acc.reduce(flags, reduction="sum").tolist()
        if signals > 0 and stop not in SIGNALS:  # every rank takes the signalled path (a checkpoint, then exit)
            stop = "SIGTERM"
        elif not stop and over_time > 0:
            stop = "max_time"
    return stop


def budget_reached(state: RunState, cfg: TrainConfig, total: int, max_time: float | None, spe: int) -> str:
    if state.step >= total:
        return "max_steps" if cfg.max_steps is not None and state.step >= cfg.max_steps else "max_epochs"
    if cfg.max_epochs is not None and state.step >= math.ceil(cfg.max_epochs * spe):
        return "max_epochs"
    if max_time is not None and state.elapsed >= max_time:
        return "max_time"
    return ""
