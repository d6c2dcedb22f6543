"""A resumable output of `protlm embed`: the embeddings go, one chunk of records at a time, into finished
part files beside the output, and are merged into it at the end.

`.OUT.partial/` holds `settings.json` (what the embeddings depend on: model, precision, device, outputs,
options, input) and `part-000000.zip` ... (spools, `io/embeddings.SpoolWriter`: each written to a temporary
name and renamed when complete, so a kill leaves only whole parts). A part holds exactly one chunk of the
embedder's records, so a resumed run sees the same chunks, hence the same batches, as an uninterrupted one,
and its output is the same, record for record and bit for bit. `--resume` checks the settings, checks the
ids of the records done against the input's first records, skips them and goes on; without it, a partial
output left by an interrupted run is replaced (the run starts over and says so). The parts are removed once the output
is written, or when the input turns out bad (its records are not what was embedded).
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from protlm.errors import ProtlmError
from protlm.io.atomic import refuse_links, write_json
from protlm.io.embeddings import Spooled, SpoolWriter, read_spool
from protlm.io.structured import read_json

SETTINGS = "settings.json"


class PartialOutput:
    """The part files of one output (`out`), new or resumed."""

    def __init__(self, out: str | Path, keys: list[str], settings: dict, resume: bool):
        self.out, self.keys = Path(out), keys
        self.dir = self.out.parent / f".{self.out.name}.partial"
        refuse_links(self.out.parent, "--out")
        self.replaced = self.dir.exists() and not resume  # a fresh run starts over (it says so)
        if self.replaced:
            shutil.rmtree(self.dir)
        if self.dir.exists():
            self._check(settings)
        else:
            self.dir.mkdir(parents=True)
            write_json(self.dir / SETTINGS, settings)
        self.parts = sorted(self.dir.glob("part-*.zip"))

    def _check(self, settings: dict) -> None:
        """A resumed run computes what the interrupted one did, or it is refused naming the difference."""
        saved = read_json(self.dir / SETTINGS)
        for key in sorted(set(saved) | set(settings)):
            if saved.get(key) != settings.get(key):
                raise ProtlmError(f"--resume: {self.dir} was embedded with {key} {saved.get(key)!r}, this run has "
                                  f"{settings.get(key)!r}; run as before, or remove the directory to start over")  # fmt: skip

    def done_ids(self) -> Iterator[str]:
        for part in self.parts:
            try:
                yield from (e.id for e in read_spool(part))
            except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError) as e:
                raise ProtlmError(f"--resume: {part} is not a part this command wrote ({type(e).__name__}); remove "
                                  f"{self.dir} to start over") from None  # fmt: skip

    def todo(self, records: Iterable) -> Iterator:
        """`records` past those done, after checking that the done ones are the input's first records."""
        records = iter(records)
        n = 0
        for n, done in enumerate(self.done_ids(), 1):
            rec = next(records, None)
            if rec is None or rec.id != done:
                found = "the input ends" if rec is None else f"the input has {rec.id!r}"
                raise ProtlmError(f"--resume: record {n:,} of {self.dir} is {done!r} but {found}: the input changed "
                                  "since the interrupted run; remove the directory to start over")  # fmt: skip
        self.n_done = n
        return records

    def chunks(self, records: Iterator, size: int) -> Iterator[list]:
        """The remaining records in chunks of `size` (the embedder's own chunk, so batches replay)."""
        while chunk := list(islice(records, size)):
            yield chunk

    def new_part(self) -> SpoolWriter:
        path = self.dir / f"part-{len(self.parts):06d}.zip"
        self.parts.append(path)
        return SpoolWriter(path, self.keys)

    def merged(self) -> Iterator[Spooled]:
        """Every record embedded, in input order."""
        for part in self.parts:
            yield from read_spool(part)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
