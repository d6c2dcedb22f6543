"""Read TAPE / PEER LMDB data sets without running code from the file.

TAPE and PEER (torchdrug) store each example as `pickle.dumps(dict)` under keys b"0", b"1", ...
plus b"num_examples". Unpickling a user's file with `pickle.loads` can execute arbitrary code, so
we use a restricted unpickler that builds only plain containers, numbers, strings and numpy
arrays, and refuses every other global with a clear error naming the file and record.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator
from pathlib import Path

from protlm.errors import InputError

_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    # numpy arrays under pickle protocol 5 (bytes buffer -> array) and bytes under protocol 2
    # (latin-1 text -> bytes): both only build data.
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("collections", "OrderedDict"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def safe_loads(data: bytes):
    """`pickle.loads` restricted to data (containers, numbers, strings, numpy arrays)."""
    return _SafeUnpickler(io.BytesIO(data)).load()


def iter_lmdb(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (index, example dict) from a TAPE/PEER LMDB directory or file."""
    import lmdb

    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False, subdir=path.is_dir())
    except lmdb.Error as e:
        raise InputError(path, f"not a readable LMDB data set ({e})") from None
    with env, env.begin(write=False) as txn:
        raw = txn.get(b"num_examples")
        if raw is None:
            raise InputError(path, "LMDB has no 'num_examples' key: not a TAPE/PEER data set")
        try:
            n = int(safe_loads(raw))
        except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as e:
            raise InputError(path, f"unreadable 'num_examples' ({e})") from None
        for i in range(n):
            value = txn.get(str(i).encode())
            if value is None:
                raise InputError(path, f"record {i} of {n} is missing", record=str(i))
            try:
                item = safe_loads(value)
            except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as e:
                raise InputError(path, f"unreadable record ({e})", record=str(i)) from None
            if not isinstance(item, dict):
                raise InputError(path, f"record is a {type(item).__name__}, expected a dict", record=str(i))
            yield i, item
