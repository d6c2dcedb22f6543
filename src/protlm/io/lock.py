"""One run per output directory: an advisory lock (`flock`) on `DIR/.protlm.lock`.

The lock file is opened without following a link, and the directory is checked for planted links
first (`io.atomic.output_dir`). The kernel drops the lock when its process ends, however it ends, so a crashed or killed run never
leaves it stuck; the file's text (pid, host, start time) only serves the message. Where `flock` is
missing or refused (Windows, some network file systems) runs go unlocked, as before.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from protlm.errors import ProtlmError
from protlm.io.atomic import open_no_follow, output_dir, refuse_links

LOCK_FILE = ".protlm.lock"

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


@contextmanager
def run_lock(directory: str | Path, what: str, enabled: bool | None = None) -> Iterator[None]:
    """Hold `directory`'s lock for the block; another holder makes this one-line `ProtlmError`.
    `enabled` defaults to "this is rank 0" (the other ranks of a distributed run share the directory)."""
    if enabled is None:
        enabled = os.environ.get("RANK", "0") == "0"
    if not enabled or fcntl is None:
        yield
        return
    directory = output_dir(directory)  # a copied run dir may plant links: refused before anything is written
    path = directory / LOCK_FILE
    fh = open_no_follow(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = " ".join(fh.read().split())[:200] or "another process"
            raise ProtlmError(f"{directory}: in use by another protlm run ({holder}); wait for it to end, "
                              f"or give {what} another --out") from None  # fmt: skip
        except OSError:  # no lock support on this file system: run unlocked
            yield
            return
        fh.seek(0)
        fh.truncate()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        fh.write(f"{what}, pid {os.getpid()} on {socket.gethostname()}, since {stamp}\n")
        fh.flush()
        yield
    finally:
        fh.close()  # closing releases the lock


@contextmanager
def build_lock(target: str | Path, log=lambda s: None) -> Iterator[None]:
    """Wait for, then hold, the lock of building `target` (a sibling file `.NAME.lock`): two processes
    filling one store or cache entry run one after the other, and the later finds the work done."""
    target = Path(target)
    if fcntl is None:
        yield
        return
    refuse_links(target, "the store")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open_no_follow(target.parent / f".{target.name}.lock", "a+", encoding="utf-8") as fh:
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log(f"waiting for another process preparing {target}")
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except OSError:  # no lock support on this file system: build unlocked
            pass
        yield
