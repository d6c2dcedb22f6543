"""Fault injection for the kill-and-resume tests (inactive unless PROTLM_FAULT is set)."""

from __future__ import annotations

import os
import signal


def fault(where: str, step: int) -> None:
    """PROTLM_FAULT=step:N kills this process with SIGKILL right after optimizer step N;
    PROTLM_FAULT=save:N kills it in the middle of writing checkpoint N (its files written, before
    the rename that makes it visible); PROTLM_FAULT=sigterm:N sends this process SIGTERM right after step N
    (what a scheduler's pre-emption sends)."""
    wanted = os.environ.get("PROTLM_FAULT")
    if wanted == f"{where}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
    if where == "step" and wanted == f"sigterm:{step}":
        os.kill(os.getpid(), signal.SIGTERM)
