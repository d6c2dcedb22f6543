"""Outputs written atomically: to a temporary sibling, renamed into place only when complete, so a
failure, a full disk or a kill never leaves a partial file under the final name."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np


def temporary_sibling(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """`open(path, mode)` whose file appears under `path` only if the block completes."""
    tmp = temporary_sibling(path)
    try:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) atomically; returns the path."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | Path, obj) -> Path:
    """Write `obj` as indented JSON atomically (numpy scalars as numbers); serialised first, so a value
    that is not JSON writes nothing."""
    return write_text(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _jsonable(x):
    if isinstance(x, np.integer | np.floating):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON")


def save_figure(fig, path: str | Path, **kwargs) -> Path:
    """`fig.savefig(path)` atomically, the format from the suffix (png when there is none)."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format=path.suffix.lstrip(".").lower() or "png", **kwargs)
    return path
