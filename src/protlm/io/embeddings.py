"""Streaming writers of embeddings, chosen by the output file's extension.

- `.parquet`: one row per protein: `id`, `length`, and one list<float32> column per output
  (`mean`, `cls`, `mean.-4`, ...; per-residue outputs are list<list<float32>>, length x hidden).
- `.npz`: one array per protein and output, named `ID` when there is one output, else `OUTPUT/ID`;
  written entry by entry into the zip, so `numpy.load` reads it and memory stays flat.
- `.h5` / `.hdf5`: one dataset per protein (as ProtTrans' embedder), at the root when there is one
  output, else in a group per output; each dataset keeps the original id in its `id` attribute.

Member names are the ids with `%`, `/`, backslash, control characters and a leading `.` percent-encoded
(`member_name`; `urllib.parse.unquote` gives the id back), so an id such as `../../x` or `/etc/x` can
never name a path outside the archive, and `sp/P1` and `sp_P1` stay two names. A name written twice
is an error. Every writer writes a temporary file beside the output and renames it into place only
when all records are written: a failure or a kill never leaves a partial file under the final name.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protlm.errors import ProtlmError
from protlm.io.atomic import new_temp_file
from protlm.io.structured import parse_json

FORMATS = (".parquet", ".npz", ".h5", ".hdf5")


_UNSAFE = re.compile(r"[%/\\\x00-\x1f\x7f]|^\.")


def member_name(rid: str) -> str:
    """An id as an archive / HDF5 member name: `%`, `/`, `\\`, control characters and a leading `.`
    percent-encoded; reversible with `urllib.parse.unquote`."""
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group(0).encode()), rid)


def check_output(path: str | Path) -> str:
    """The output's format (its suffix); ProtlmError for an unknown one or a directory."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ProtlmError(f"{path}: unknown output format; use one of {', '.join(FORMATS)}")
    if Path(path).is_dir():
        raise ProtlmError(f"{path}: is a directory; --out names the output file")
    return suffix


def open_writer(path: str | Path, keys: list[str], meta: dict | None = None):
    """The writer of `path`'s format. `meta` (the model, precision, device ...) is recorded in the file where
    readers do not trip over it: Parquet schema metadata `protlm`, the NPZ's zip comment, HDF5 root attribute
    `protlm`, each as JSON."""
    suffix = check_output(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cls = {".parquet": ParquetWriter, ".npz": NpzWriter}.get(suffix, H5Writer)
    writer = cls(path, keys)
    writer.meta = json.dumps(meta or {}, sort_keys=True)
    return writer


def file_meta(path: str | Path) -> dict:
    """What `open_writer` recorded in an embeddings file ({} when nothing was)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        text = (pq.read_schema(path).metadata or {}).get(b"protlm", b"{}").decode()
    elif suffix == ".npz":
        with zipfile.ZipFile(path) as zf:
            text = zf.comment.decode() or "{}"
    else:
        import h5py

        with h5py.File(path, "r") as f:
            text = str(f.attrs.get("protlm", "{}"))
    return parse_json(text, f"{path}: protlm metadata")


class _Atomic:
    """Writes go to a temporary sibling; `close` renames it into place, `abort` removes it."""

    meta = "{}"  # JSON recorded in the file (`open_writer`)

    def _start(self, path) -> Path:
        self.path = Path(path)
        self.tmp = new_temp_file(self.path)
        self.names: set[str] = set()
        return self.tmp

    def _claim(self, name: str, rid: str) -> None:
        if name in self.names:
            raise ProtlmError(f"{self.path}: id {rid!r} is written twice (output names must be unique)")
        self.names.add(name)

    def _publish(self) -> None:
        try:
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.tmp.unlink(missing_ok=True)
            raise ProtlmError(f"{self.path}: cannot write the output there ({e.strerror})") from None

    def abort(self) -> None:
        try:
            self._close_file()
        finally:
            self.tmp.unlink(missing_ok=True)


class ParquetWriter(_Atomic):
    def __init__(self, path, keys: list[str], rows_per_group: int = 1024):
        self._start(path)
        self.keys, self.rows_per_group = keys, rows_per_group
        self.rows: list = []
        self.writer = None

    def write(self, emb) -> None:
        self._claim(emb.id, emb.id)
        self.rows.append(emb)
        if len(self.rows) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.rows:
            return
        columns = {
            "id": pa.array([e.id for e in self.rows]),
            "length": pa.array([e.length for e in self.rows], pa.int32()),
        }
        for key in self.keys:
            values = [e.vectors[key].astype(np.float32) for e in self.rows]
            if values[0].ndim == 1:
                columns[key] = pa.array([v.tolist() for v in values], pa.list_(pa.float32()))
            else:
                columns[key] = pa.array([v.tolist() for v in values], pa.list_(pa.list_(pa.float32())))
        table = pa.table(columns).replace_schema_metadata({"protlm": self.meta})
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, table.schema)
        self.writer.write_table(table)
        self.rows = []

    def _close_file(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def close(self) -> None:
        self._flush()
        if self.writer is None:  # no rows at all: still a valid (empty) table
            import pyarrow as pa
            import pyarrow.parquet as pq

            empty = pa.table({"id": pa.array([], pa.string()), "length": pa.array([], pa.int32())})
            pq.write_table(empty.replace_schema_metadata({"protlm": self.meta}), self.tmp)
        self._close_file()
        self._publish()


class NpzWriter(_Atomic):
    def __init__(self, path, keys: list[str]):
        self.keys = keys
        self.zip = zipfile.ZipFile(self._start(path), "w", compression=zipfile.ZIP_STORED, allowZip64=True)

    def write(self, emb) -> None:
        name = member_name(emb.id)
        self._claim(name, emb.id)
        for key in self.keys:
            member = name if len(self.keys) == 1 else f"{key}/{name}"
            with self.zip.open(member + ".npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(
                    fh, np.ascontiguousarray(emb.vectors[key], dtype=np.float32), allow_pickle=False
                )

    def _close_file(self) -> None:
        self.zip.close()

    def close(self) -> None:
        self.zip.comment = self.meta.encode()
        self._close_file()
        self._publish()


class H5Writer(_Atomic):
    def __init__(self, path, keys: list[str]):
        import h5py

        self.keys = keys
        self.file = h5py.File(self._start(path), "w")

    def write(self, emb) -> None:
        name = member_name(emb.id)
        self._claim(name, emb.id)
        for key in self.keys:
            where = name if len(self.keys) == 1 else f"{key}/{name}"
            dataset = self.file.create_dataset(where, data=np.asarray(emb.vectors[key], dtype=np.float32))
            dataset.attrs["id"] = emb.id

    def _close_file(self) -> None:
        self.file.close()

    def close(self) -> None:
        self.file.attrs["protlm"] = self.meta
        self._close_file()
        self._publish()


@dataclass
class Spooled:
    """An embedding read back from a rank's spool (the fields the writers read)."""

    id: str
    length: int
    chains: tuple[int, ...]
    vectors: dict[str, np.ndarray]


class SpoolWriter(_Atomic):
    """One rank's share of a `torchrun` embed (`protlm.ranks`): an uncompressed zip of `.npy` arrays,
    `K/KEY.npy` for the K-th record it wrote, and `index.json` (id, length, chains per record) at close."""

    def __init__(self, path, keys: list[str]):
        self.keys, self.index = keys, []
        self.zip = zipfile.ZipFile(self._start(path), "w", compression=zipfile.ZIP_STORED, allowZip64=True)

    def write(self, emb) -> None:
        for key in self.keys:
            with self.zip.open(f"{len(self.index)}/{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(emb.vectors[key], np.float32), allow_pickle=False)
        self.index.append([emb.id, int(emb.length), [int(c) for c in emb.chains]])

    def _close_file(self) -> None:
        self.zip.close()

    def close(self) -> None:
        self.zip.writestr("index.json", json.dumps({"keys": self.keys, "records": self.index}))
        self._close_file()
        self._publish()


def read_spool(path: Path) -> Iterator[Spooled]:
    """The embeddings of a spool, in the order written (arrays read without pickle)."""
    with zipfile.ZipFile(path) as zf:
        meta = parse_json(zf.read("index.json"), f"{path}:index.json")
        for k, (rid, length, chains) in enumerate(meta["records"]):
            vectors = {}
            for key in meta["keys"]:
                with zf.open(f"{k}/{key}.npy") as fh:
                    vectors[key] = np.lib.format.read_array(fh, allow_pickle=False)
            yield Spooled(rid, length, tuple(chains), vectors)
