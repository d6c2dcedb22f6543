"""Outputs written atomically and only where they belong.

- **Atomic.** A file is written to a temporary sibling and renamed into place only when complete, so a
  failure, a full disk or a kill never leaves a partial file under the final name. The rename replaces
  a symbolic link at the final name; it never writes through it.
- **No planted links.** An output or store directory may have been copied from someone else, so it is
  untrusted: `refuse_links` ends the command (one line, nothing written) when a symbolic link is
  anywhere inside it, and the commands that write into a directory call it first. Temporary names are
  unpredictable and created exclusively (`mkstemp` / `mkdtemp`: never an existing file or link), and a
  file that is appended to or locked in place is opened with `O_NOFOLLOW`.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from protlm.errors import ProtlmError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # 0 on Windows, where links need privileges to create


def _tmp_prefix(path: Path) -> str:
    return f".{path.name[:120]}.tmp-"


def new_temp_file(path: str | Path) -> Path:
    """A new, empty, exclusively created file beside `path`, with an unpredictable name."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path))
    os.close(fd)
    return Path(name)


def new_temp_dir(path: str | Path) -> Path:
    """A new, empty, exclusively created directory beside `path`, with an unpredictable name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=path.parent, prefix=_tmp_prefix(path)))


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """`open(path, mode)` whose file appears under `path` only if the block completes."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path))
    tmp = Path(name)
    try:
        with open(fd, mode, **kwargs) as fh:
            yield fh
        try:
            os.replace(tmp, path)
        except (IsADirectoryError, NotADirectoryError) as e:
            raise ProtlmError(f"{path}: cannot write the output there ({e.strerror})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_no_follow(path: str | Path, mode: str = "a", **kwargs) -> IO:
    """`open(path, mode)` ("a" or "a+") of a regular file with one name only: a symbolic link, a hard
    link to a file elsewhere, a FIFO (whose open would block) or a device at `path` is one line."""
    flags = os.O_CREAT | os.O_APPEND | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    flags |= os.O_RDWR if "+" in mode else os.O_WRONLY
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP or Path(path).is_symlink():
            raise ProtlmError(f"{path}: is a symbolic link; protlm never writes through one (remove it)") from None
        if e.errno in (errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.ENXIO):
            raise ProtlmError(f"{path}: cannot write there ({e.strerror})") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        what = "has other names (a hard link)" if stat.S_ISREG(info.st_mode) else "is not a regular file"
        raise ProtlmError(f"{path}: {what}; protlm writes only files of its own here (remove it)")
    os.set_blocking(fd, True)
    return open(fd, mode, **kwargs)


def refuse_links(directory: str | Path, what: str = "--out") -> Path:
    """ProtlmError when `directory` is a symbolic link, or holds one anywhere inside (walked without
    following links), or a hard link to a file elsewhere, a FIFO, socket or device. A directory copied
    from a colleague may plant any of them to make protlm write (or block) outside it."""
    directory = Path(directory)
    if directory.is_symlink():
        raise ProtlmError(f"{directory}: {what} is a symbolic link; give the directory it points to, if you trust "
                          "it (a copied run dir may plant one to make protlm write elsewhere)")  # fmt: skip
    todo = [directory] if directory.is_dir() else []
    while todo:
        with os.scandir(todo.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    todo.append(Path(entry.path))
                    continue
                info = entry.stat(follow_symlinks=False)
                why = ("a symbolic link" if stat.S_ISLNK(info.st_mode)
                       else "a FIFO, socket or device" if not stat.S_ISREG(info.st_mode)
                       else "a hard link to a file elsewhere" if info.st_nlink > 1 else None)  # fmt: skip
                if why:
                    raise ProtlmError(
                        f"{entry.path}: {why} inside {what} {directory}; protlm writes only inside its output "
                        "directories and never through a link (remove it, or choose another directory)"
                    )
    return directory


def output_dir(directory: str | Path, what: str = "--out") -> Path:
    """`directory`, created if missing, with no symbolic link inside (see `refuse_links`)."""
    directory = Path(directory)
    refuse_links(directory, what)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


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
