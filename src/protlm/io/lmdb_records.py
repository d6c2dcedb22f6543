"""Read TAPE / PEER LMDB data sets without running code from the file.

TAPE and PEER (torchdrug) store each example as `pickle.dumps(dict)` under keys b"0", b"1", ...
plus b"num_examples". `pickle.loads` on a user's file can run arbitrary code, and even numpy's own
reconstructors are unsafe on hostile arguments: an object dtype rebuilt with `flags = 0` makes
`numpy.core.multiarray.scalar` read attacker bytes as a `PyObject*`. So no numpy (or any other)
callable ever sees data from the file. `find_class` hands out our own constructors instead; they
validate their arguments and build numeric arrays with `np.frombuffer` from a dtype *string* on an
allowlist. The decoded record holds only None, bool, int, float, str, bytes, list, dict and
numeric ndarrays (bool, int, uint, float; no object, record or sub-array dtypes).

Nothing recursive ever runs on the file's structure before its depth and size are bounded. Hashing,
comparing or printing a tuple recurses in C without a limit, so a dict key nested a few hundred
thousand levels deep (a few bytes a level) crashes the interpreter, and one built from shared memo
references (`x = (y, y)` a hundred times) takes 2**100 steps. So the stream is decoded by Python's
own opcode loop (`pickle._Unpickler`, iterative) with the five opcodes that hash replaced: dict keys
and set members must be scalars (str, bytes, int, float, bool, None) before anything hashes them.
Messages describe a value by its type, never by `repr`. The result is then copied into plain data as a
tree, at most 100 levels deep and `MAX_NODES` values in all.
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
MAX_DEPTH = 100  # nesting of lists / dicts in one record (TAPE / PEER records use 2 or 3)
MAX_NODES = 1_000_000  # values in one decoded record, shared references counted each time they appear
_SCALARS = (str, bytes, int, float, bool, type(None))
_DTYPE = re.compile(r"(b1|[iu][1248]|f[248])")  # numpy's pickled dtype strings for numeric arrays
_BYTEORDER = {"<": "<", ">": ">", "|": "=", "=": "="}


class UnsafeRecord(pickle.UnpicklingError):
    """The record asks for something outside the plain-data allowlist."""


def describe(value) -> str:
    """A short, bounded description of a value from the file: a short scalar's repr, else its type.
    Never `repr` of a container (it recurses, and a shared structure prints exponentially)."""
    if type(value) in (str, bytes) and len(value) <= 40:
        return repr(value)
    if type(value) in (bool, float, type(None)) or (type(value) is int and value.bit_length() <= 64):
        return repr(value)
    return type(value).__name__.strip("_")


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
            raise UnsafeRecord(f"refusing dtype {describe(code)}: only bool, int, uint and float arrays are read")
        self.code, self.order, self.built = code, "=", False

    def __setstate__(self, state):
        # numpy's state: (version, byteorder, subarray, names, fields, elsize, alignment, flags)
        if self.built or not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise UnsafeRecord("refusing dtype state: not numpy's simple-dtype form")
        if type(state[1]) is not str or state[1] not in _BYTEORDER or any(s is not None for s in state[2:5]):
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
        raise UnsafeRecord(f"refusing array shape of {describe(value)} (at most {MAX_DIMS} sizes below 2**40)")
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
        raise UnsafeRecord(f"refusing array order {describe(order)}")
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
        raise UnsafeRecord(f"refusing codec {describe(encoding)}: only latin1 byte strings are read")
    return text.encode("latin-1")


def _as_list(items=(), *rest):
    if rest or not isinstance(items, list | tuple):
        raise UnsafeRecord("refusing set() of a non-list")
    return list(items)


def _scalar_keys(keys, what: str):
    """Refuse dict keys / set members that are not scalars, before anything hashes them."""
    for key in keys:
        if type(key) not in _SCALARS:
            raise UnsafeRecord(f"refusing a {what} of type {describe(key)}: only str, bytes, int, float, bool or None")


def _as_dict(items=(), *rest):
    """`OrderedDict(list of pairs)`, as a dict with scalar keys."""
    if rest or not isinstance(items, list | tuple):
        raise UnsafeRecord("refusing OrderedDict() of a non-list")
    pairs = [p for p in items if isinstance(p, list | tuple) and len(p) == 2]
    if len(pairs) != len(items):
        raise UnsafeRecord("refusing OrderedDict() items that are not pairs")
    _scalar_keys([k for k, _ in pairs], "dict key")
    return {k: v for k, v in pairs}


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
    ("collections", "OrderedDict"): _Constructor(_as_dict),
}


class _PlainUnpickler(pickle._Unpickler):  # noqa: SLF001 (the Python opcode loop: its dispatch can be replaced)
    """Python's own unpickler with the opcodes that hash checked first (see the module docstring)."""

    dispatch = dict(pickle._Unpickler.dispatch)  # noqa: SLF001

    def find_class(self, module: str, name: str):
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeRecord(f"refusing to load {ascii(module[:60])[1:-1]}.{ascii(name[:60])[1:-1]}") from None

    def persistent_load(self, pid):
        raise UnsafeRecord("refusing persistent ids")

    def _dict_target(self) -> dict:
        target = self.stack[-1]
        if type(target) is not dict:
            raise UnsafeRecord(f"refusing SETITEM into a {describe(target)}")
        return target

    def load_dict(self):
        items = self.pop_mark()
        _scalar_keys(items[::2], "dict key")
        self.append({items[i]: items[i + 1] for i in range(0, len(items) - 1, 2)})

    def load_setitem(self):
        value, key = self.stack.pop(), self.stack.pop()
        _scalar_keys([key], "dict key")
        self._dict_target()[key] = value

    def load_setitems(self):
        items = self.pop_mark()
        _scalar_keys(items[::2], "dict key")
        target = self._dict_target()
        for i in range(0, len(items) - 1, 2):
            target[items[i]] = items[i + 1]

    def load_additems(self):
        items = self.pop_mark()
        _scalar_keys(items, "set member")
        target = self.stack[-1]
        if type(target) is not set:
            raise UnsafeRecord(f"refusing ADDITEMS into a {describe(target)}")
        target.update(items)

    def load_frozenset(self):
        items = self.pop_mark()
        _scalar_keys(items, "set member")
        self.append(frozenset(items))

    for _op, _fn in ((pickle.DICT, load_dict), (pickle.SETITEM, load_setitem), (pickle.SETITEMS, load_setitems),
                     (pickle.ADDITEMS, load_additems), (pickle.FROZENSET, load_frozenset)):  # fmt: skip
        dispatch[_op[0]] = _fn
    del _op, _fn


def _plain(root):
    """The decoded object as a tree of plain values: stubs replaced by their values, tuples and sets as
    lists; at most `MAX_DEPTH` levels and `MAX_NODES` values (a shared reference counts each time it
    appears, so an exponential structure of shared references is refused, not expanded). Iterative."""
    budget = MAX_NODES

    def leaf(obj):
        if obj is None or type(obj) in (bool, int, float, str, bytes) or isinstance(obj, np.ndarray):
            return obj, False
        if type(obj) is bytearray:
            return bytes(obj), False
        if isinstance(obj, _Array):
            if obj.value is None:
                raise UnsafeRecord("refusing a numpy array without its data")
            return obj.value, False
        if type(obj) is dict:
            return {}, True
        if type(obj) in (list, tuple, set, frozenset):
            return [], True
        raise UnsafeRecord(f"refusing a value of type {type(obj).__name__.strip('_')}")

    out, is_container = leaf(root)
    # each entry: (source container, its copy, iterator over its items); `path` holds the sources' ids
    stack = [(root, out, iter(root.items() if type(root) is dict else root))] if is_container else []
    path = {id(root)}
    while stack:
        source, copy, items = stack[-1]
        item = next(items, _END)
        if item is _END:
            path.discard(id(stack.pop()[0]))
            continue
        budget -= 1
        if budget < 0:
            raise UnsafeRecord(f"refusing a record of over {MAX_NODES:,} values")
        key, value = item if type(source) is dict else (None, item)
        if id(value) in path:
            raise UnsafeRecord("refusing a recursive structure")
        child, is_container = leaf(value)
        if type(copy) is dict:
            copy[key] = child
        else:
            copy.append(child)
        if is_container:
            if len(stack) >= MAX_DEPTH:
                raise UnsafeRecord(f"refusing structures nested over {MAX_DEPTH} levels")
            stack.append((value, child, iter(value.items() if type(value) is dict else value)))
            path.add(id(value))
    return out


_END = object()


def safe_loads(data: bytes):
    """Decode a pickled record into plain data (see the module docstring); `UnsafeRecord` otherwise."""
    try:
        return _plain(_PlainUnpickler(io.BytesIO(data)).load())
    except UnsafeRecord:
        raise
    except Exception as e:  # malformed stream (truncated, bad opcode or memo index, wrong arity)
        why = e.args[0][:120] if e.args and type(e.args[0]) is str else ""  # never str() of file objects
        raise UnsafeRecord(f"unreadable pickle ({type(e).__name__}: {why})") from None


# The LMDB itself is read in a child process: liblmdb maps the file and trusts its page pointers, so a
# damaged or crafted data.mdb can make it read past the end of the map (SIGBUS), which no Python code
# can catch. The child only looks keys up and sends the raw values back; every byte is decoded here.
_READER = r"""
import struct, sys
import lmdb
out = sys.stdout.buffer
def send(kind, data=b""):
    out.write(kind + struct.pack("<Q", len(data)) + data)
try:
    env = lmdb.open(sys.argv[1], readonly=True, lock=False, readahead=False, meminit=False,
                    subdir=sys.argv[2] == "1", max_dbs=0)
    txn = env.begin(write=False)
    for line in sys.stdin.buffer:
        value = txn.get(line.rstrip(b"\n"))
        send(b"M") if value is None else send(b"V", bytes(value))
        out.flush()
except lmdb.Error as e:
    send(b"E", str(e).encode("utf-8", "replace")[:300])
"""
BATCH = 256  # keys asked for at a time


class _Reader:
    """Raw values of an LMDB's keys, looked up by a child process (see `_READER`)."""

    def __init__(self, path: Path):
        import subprocess
        import sys

        self.path = path
        self.proc = subprocess.Popen([sys.executable, "-c", _READER, str(path), "1" if path.is_dir() else "0"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip

    def get(self, keys: list[bytes]) -> list[bytes | None]:
        try:
            self.proc.stdin.write(b"".join(k + b"\n" for k in keys))
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the child has ended: its error frame or exit status says why
        return [self._frame() for _ in keys]

    def _frame(self) -> bytes | None:
        head = self.proc.stdout.read(9)
        if len(head) == 9:
            kind, n = head[:1], int.from_bytes(head[1:], "little")
            data = self.proc.stdout.read(n)
            if kind == b"M":
                return None
            if kind == b"V" and len(data) == n:
                return data
            if kind == b"E":
                raise InputError(self.path, f"not a readable LMDB data set ({data.decode('utf-8', 'replace')})")
        code = self.proc.wait()
        why = f"killed by {_signal_name(-code)}" if code < 0 else f"exit status {code}"
        raise InputError(self.path, f"damaged LMDB data set (its reader ended: {why})")

    def close(self) -> None:
        if self.proc.poll() is None:  # stopped early, or an error above
            self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def iter_lmdb(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (index, example dict) from a TAPE/PEER LMDB directory or file."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    reader = _Reader(path)
    try:
        (raw,) = reader.get([b"num_examples"])
        if raw is None:
            raise InputError(path, "LMDB has no 'num_examples' key: not a TAPE/PEER data set")
        try:
            n = safe_loads(raw)
        except UnsafeRecord as e:
            raise InputError(path, f"unreadable 'num_examples' ({e})") from None
        if type(n) is not int or n < 0:
            raise InputError(path, f"'num_examples' must be a non-negative integer, found {describe(n)}")
        for start in range(0, n, BATCH):
            indices = range(start, min(start + BATCH, n))
            for i, value in zip(indices, reader.get([str(i).encode() for i in indices]), strict=True):
                yield i, _record(path, i, n, value)
    finally:
        reader.close()


def _record(path: Path, i: int, n: int, value: bytes | None) -> dict:
    if value is None:
        raise InputError(path, f"record {i} of {n} is missing", record=str(i))
    try:
        item = safe_loads(value)
    except UnsafeRecord as e:
        raise InputError(path, f"unreadable record ({e})", record=str(i)) from None
    if not isinstance(item, dict):
        raise InputError(path, f"record is a {type(item).__name__}, expected a dict", record=str(i))
    return item
