"""Read TAPE / PEER LMDB data sets without running code from the file.

TAPE and PEER (torchdrug) store each example as `pickle.dumps(dict)` under keys b"0", b"1", ...
plus b"num_examples". `pickle.loads` on a user's file can run arbitrary code, and even numpy's own
reconstructors are unsafe on hostile arguments: an object dtype rebuilt with `flags = 0` makes
`numpy.core.multiarray.scalar` read attacker bytes as a `PyObject*`. So no numpy (or any other)
callable ever sees data from the file. `find_class` hands out our own constructors instead; they
validate their arguments and build numeric arrays with `np.frombuffer` from a dtype *string* on an
allowlist. The decoded record holds only None, bool, int, float, str, bytes, list, dict and
numeric ndarrays (bool, int, uint, float; no object, record or sub-array dtypes).
"""

from __future__ import annotations

import io
import math
import pickle
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from protlm.errors import InputError

MAX_ARRAY_BYTES = 1 << 30  # one array; it must also match the bytes actually present in the record
MAX_DIMS = 32
_DTYPE = re.compile(r"(b1|[iu][1248]|f[248])")  # numpy's pickled dtype strings for numeric arrays
_BYTEORDER = {"<": "<", ">": ">", "|": "=", "=": "="}


class UnsafeRecord(pickle.UnpicklingError):
    """The record asks for something outside the plain-data allowlist."""


class _Stub:
    """Base of every object `find_class` can produce: BUILD reaches `__setstate__` only."""

    __slots__ = ()

    def __setstate__(self, state):
        raise UnsafeRecord(f"refusing to BUILD into {type(self).__name__.strip('_')}")


class _DType(_Stub):
    """`numpy.dtype(code, align, copy)` + BUILD(state): kept as a code string and a byte order."""

    __slots__ = ("code", "order", "built")

    def __init__(self, code=None, align=False, copy=True, *rest):
        if not isinstance(code, str) or not _DTYPE.fullmatch(code) or rest:
            raise UnsafeRecord(f"refusing dtype {code!r}: only bool, int, uint and float arrays are read")
        self.code, self.order, self.built = code, "=", False

    def __setstate__(self, state):
        # numpy's state: (version, byteorder, subarray, names, fields, elsize, alignment, flags)
        if self.built or not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise UnsafeRecord("refusing dtype state: not numpy's simple-dtype form")
        if state[1] not in _BYTEORDER or any(s is not None for s in state[2:5]):
            raise UnsafeRecord("refusing dtype with record fields or sub-arrays")
        self.order, self.built = _BYTEORDER[state[1]], True  # elsize / alignment / flags are never used

    def resolve(self) -> np.dtype:
        return np.dtype(self.code).newbyteorder(self.order)


def _dtype(value) -> np.dtype:
    if not isinstance(value, _DType):
        raise UnsafeRecord(f"refusing dtype {type(value).__name__}: not a numeric dtype")
    return value.resolve()


def _shape(value) -> tuple[int, ...]:
    shape = tuple(value) if isinstance(value, tuple | list) else (value,)
    if len(shape) > MAX_DIMS or not all(type(d) is int and 0 <= d < 1 << 40 for d in shape):
        raise UnsafeRecord(f"refusing array shape {str(value)[:80]}")
    return shape


def _array(data, dtype, shape, order: str = "C") -> np.ndarray:
    dtype, shape = _dtype(dtype), _shape(shape)
    if isinstance(data, str):  # protocol 2 stores bytes as latin-1 text
        data = data.encode("latin-1")
    if isinstance(data, pickle.PickleBuffer):
        data = data.raw()
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UnsafeRecord("refusing array data that is not a byte string (object arrays are not read)")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES or nbytes != len(data):
        raise UnsafeRecord(f"refusing array: shape {shape} x {dtype.itemsize} bytes does not match {len(data)} bytes")
    if order not in ("C", "F"):
        raise UnsafeRecord(f"refusing array order {order!r}")
    return np.frombuffer(bytes(data), dtype=dtype).reshape(shape, order=order).copy()


class _ArrayType(_Stub):
    """Stands for `numpy.ndarray` as the first argument of `_reconstruct`."""

    __slots__ = ()


class _Array(_Stub):
    """`_reconstruct(ndarray, (0,), b'b')` + BUILD((version, shape, dtype, is_fortran, data))."""

    __slots__ = ("value",)

    def __init__(self, cls=None, shape=None, typecode=None):
        if not isinstance(cls, _ArrayType):
            raise UnsafeRecord("refusing _reconstruct of anything but numpy.ndarray")
        self.value = None

    def __setstate__(self, state):
        if self.value is not None or not isinstance(state, tuple) or len(state) not in (4, 5):
            raise UnsafeRecord("refusing array state: not numpy's ndarray form")
        shape, dtype, fortran, data = state[-4:]
        self.value = _array(data, dtype, shape, "F" if fortran is True else "C")


def _scalar(dtype=None, data=None, *rest):
    if rest:
        raise UnsafeRecord("refusing numpy scalar with extra arguments")
    return _array(data, dtype, ()).item()


def _frombuffer(buf=None, dtype=None, shape=None, order="C", *rest):
    if rest:
        raise UnsafeRecord("refusing _frombuffer with extra arguments")
    return _array(buf, dtype, shape, order)


def _codecs_encode(text=None, encoding=None, *rest):
    """Protocol 2 writes bytes as `_codecs.encode(latin-1 text, 'latin1')`; no other codec is run."""
    if rest or not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeRecord(f"refusing codec {str(encoding)[:40]!r}: only latin1 byte strings are read")
    return text.encode("latin-1")


def _as_list(items=(), *rest):
    if rest or not isinstance(items, list | tuple):
        raise UnsafeRecord("refusing set() of a non-list")
    return list(items)


class _Constructor(_Stub):
    """What `find_class` returns: a named, validated constructor (never a module attribute)."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)


_ARRAY_TYPE = _ArrayType()
_GLOBALS = {
    ("numpy", "ndarray"): _ARRAY_TYPE,
    ("numpy", "dtype"): _Constructor(_DType),
    ("numpy.core.multiarray", "_reconstruct"): _Constructor(_Array),
    ("numpy._core.multiarray", "_reconstruct"): _Constructor(_Array),
    ("numpy.core.multiarray", "scalar"): _Constructor(_scalar),
    ("numpy._core.multiarray", "scalar"): _Constructor(_scalar),
    ("numpy.core.numeric", "_frombuffer"): _Constructor(_frombuffer),
    ("numpy._core.numeric", "_frombuffer"): _Constructor(_frombuffer),
    ("_codecs", "encode"): _Constructor(_codecs_encode),
    ("builtins", "set"): _Constructor(_as_list),
    ("builtins", "frozenset"): _Constructor(_as_list),
    ("__builtin__", "set"): _Constructor(_as_list),  # protocol 2 writes Python 2 names
    ("__builtin__", "frozenset"): _Constructor(_as_list),
    ("collections", "OrderedDict"): _Constructor(dict),
}


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeRecord(f"refusing to load {module[:60]}.{name[:60]}") from None

    def persistent_load(self, pid):
        raise UnsafeRecord("refusing persistent ids")


def _plain(obj, seen: dict[int, object], path: set[int], depth: int = 0):
    """Replace stubs by their values; tuples and sets become lists; refuse anything else."""
    if obj is None or isinstance(obj, bool | int | float | str | bytes | np.ndarray):
        return obj
    if isinstance(obj, bytearray):
        return bytes(obj)
    if isinstance(obj, _Array):
        if obj.value is None:
            raise UnsafeRecord("refusing a numpy array without its data")
        return obj.value
    key = id(obj)
    if key in path:
        raise UnsafeRecord("refusing a recursive structure")
    if key in seen:
        return seen[key]
    if depth > 100:
        raise UnsafeRecord("refusing structures nested over 100 levels")
    path.add(key)
    if isinstance(obj, dict):
        out = {_plain(k, seen, path, depth + 1): _plain(v, seen, path, depth + 1) for k, v in obj.items()}
    elif isinstance(obj, list | tuple | set | frozenset):
        out = [_plain(v, seen, path, depth + 1) for v in obj]
    else:
        raise UnsafeRecord(f"refusing a value of type {type(obj).__name__.strip('_')}")
    path.discard(key)
    seen[key] = out
    return out


def safe_loads(data: bytes):
    """Decode a pickled record into plain data (see the module docstring); `UnsafeRecord` otherwise."""
    try:
        return _plain(_PlainUnpickler(io.BytesIO(data)).load(), {}, set())
    except UnsafeRecord:
        raise
    except Exception as e:  # malformed stream (truncated, bad opcode or memo index, wrong arity, unhashable key)
        raise UnsafeRecord(f"unreadable pickle ({type(e).__name__}: {str(e)[:120]})") from None


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
            n = safe_loads(raw)
        except UnsafeRecord as e:
            raise InputError(path, f"unreadable 'num_examples' ({e})") from None
        if type(n) is not int or n < 0:
            raise InputError(path, f"'num_examples' must be a non-negative integer, found {str(n)[:40]!r}")
        for i in range(n):
            value = txn.get(str(i).encode())
            if value is None:
                raise InputError(path, f"record {i} of {n} is missing", record=str(i))
            try:
                item = safe_loads(value)
            except UnsafeRecord as e:
                raise InputError(path, f"unreadable record ({e})", record=str(i)) from None
            if not isinstance(item, dict):
                raise InputError(path, f"record is a {type(item).__name__}, expected a dict", record=str(i))
            yield i, item
