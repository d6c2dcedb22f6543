"""User-facing errors.

Every error a user can fix by changing their input derives from `ProtlmError`. The CLI prints
its message on one line (`protlm: error: ...`) and exits with status 2, never with a traceback.
"""

from __future__ import annotations

from pathlib import Path


class ProtlmError(Exception):
    """An error caused by user input or configuration, reported without a traceback."""


class InputError(ProtlmError):
    """Malformed input data: names the file, and where known the line and the record.

    >>> str(InputError("data/train.fa", "invalid residue '#'", line=812, record="Q9H400"))
    "data/train.fa line 812 (record Q9H400): invalid residue '#'"
    """

    def __init__(self, path: str | Path, message: str, *, line: int | None = None, record: str | None = None):
        self.path, self.line, self.record, self.reason = str(path), line, record, message
        where = self.path
        if line is not None:
            where += f" line {line}"
        if record is not None:
            where += f" (record {record})"
        super().__init__(f"{where}: {message}")


class Stopped(Exception):
    """Training stopped by SIGTERM or SIGINT (a scheduler's pre-emption, Ctrl-C) after finishing its step and
    saving a checkpoint: `--resume` loses nothing. The CLI prints the message and exits with `EXIT_STATUS`
    (EX_TEMPFAIL: try again), distinct from done (0), bad input (2) and a plain interrupt (130)."""

    EXIT_STATUS = 75
