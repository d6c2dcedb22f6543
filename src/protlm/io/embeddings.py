"""Streaming writers of embeddings, chosen by the output file's extension.

- `.parquet`: one row per protein: `id`, `length`, and one list<float32> column per output
  (`mean`, `cls`, `mean.-4`, ...; per-residue outputs are list<list<float32>>, length x hidden).
- `.npz`: one array per protein and output, named `ID` when there is one output, else `OUTPUT/ID`;
  written entry by entry into the zip, so `numpy.load` reads it and memory stays flat.
- `.h5` / `.hdf5`: one dataset per protein (as ProtTrans' embedder), at the root when there is one
  output, else in a group per output. A `/` in an id becomes `_` (HDF5 paths).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from protlm.errors import ProtlmError

FORMATS = (".parquet", ".npz", ".h5", ".hdf5")


def open_writer(path: str | Path, keys: list[str]):
    suffix = Path(path).suffix.lower()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        return ParquetWriter(path, keys)
    if suffix == ".npz":
        return NpzWriter(path, keys)
    if suffix in (".h5", ".hdf5"):
        return H5Writer(path, keys)
    raise ProtlmError(f"{path}: unknown output format; use one of {', '.join(FORMATS)}")


class ParquetWriter:
    def __init__(self, path, keys: list[str], rows_per_group: int = 1024):
        self.path, self.keys, self.rows_per_group = Path(path), keys, rows_per_group
        self.rows: list = []
        self.writer = None

    def write(self, emb) -> None:
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
        table = pa.table(columns)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table)
        self.rows = []

    def close(self) -> None:
        self._flush()
        if self.writer is not None:
            self.writer.close()


class NpzWriter:
    def __init__(self, path, keys: list[str]):
        self.keys = keys
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)

    def write(self, emb) -> None:
        for key in self.keys:
            name = emb.id if len(self.keys) == 1 else f"{key}/{emb.id}"
            with self.zip.open(name + ".npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(
                    fh, np.ascontiguousarray(emb.vectors[key], dtype=np.float32), allow_pickle=False
                )

    def close(self) -> None:
        self.zip.close()


class H5Writer:
    def __init__(self, path, keys: list[str]):
        import h5py

        self.keys = keys
        self.file = h5py.File(path, "w")

    def write(self, emb) -> None:
        name = emb.id.replace("/", "_")
        for key in self.keys:
            where = name if len(self.keys) == 1 else f"{key}/{name}"
            self.file.create_dataset(where, data=np.asarray(emb.vectors[key], dtype=np.float32))

    def close(self) -> None:
        self.file.close()
