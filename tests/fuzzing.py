"""Properties of the sequence readers under mutated and random bytes, shared by tests/test_fuzz.py (a few
hundred cases per run) and bench/fuzz_readers.py (as many as asked): a reader either raises one
`InputError` naming the file, or reads every record, each one used or counted as skipped. Anything else
(another exception, a record lost) fails the property."""

from __future__ import annotations

import gzip
import io
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from protlm.errors import InputError
from protlm.io import ResiduePolicy, SkipReport, read_sequences
from protlm.io.inference import read_inputs

DATA = Path(__file__).parent / "data"
SEED_FASTA = (DATA / "swissprot_50.fasta").read_bytes()[:6000]
SEED_TABLE = b"id\tsequence\nP1\tMKTAYIAKQR\nP2\tMSVLT*\nP3\tmkvl\n"
ALPHABET = b">;\n\r\t :*ACDEFGHIKLMNPQRSTVWYXUOBZJacgtun#\x00\xff\xc3\xa9"


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """`seed` with a few random edits (insert, delete, replace a byte or a run), or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=400))
    data = bytearray(seed[: draw(st.integers(0, len(seed)))] if draw(st.booleans()) else seed)
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "run"]))
        byte = draw(st.sampled_from(ALPHABET))
        if op == "insert":
            data[at:at] = bytes([byte])
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        elif op == "replace" and at < len(data):
            data[at] = byte
        else:
            data[at:at] = bytes([byte]) * draw(st.integers(1, 300))
    return bytes(data)


cases = st.tuples(
    st.one_of(mutated(SEED_FASTA), mutated(SEED_TABLE)),
    st.sampled_from(["in.fa", "in.fa.gz", "in.tsv", "in.csv"]),
    st.sampled_from(["plain", "gzip", "gzip-cut"]),
    st.booleans(),  # strict
    st.sampled_from([None, 50]),  # max_length
    st.booleans(),  # read for inference (chains joined by ':')
)


def check(data: bytes, name: str, compression: str, strict: bool, max_length: int | None, inference: bool) -> str:
    """One case; returns 'read' or 'error', raises AssertionError when the property fails."""
    stored = data
    if compression != "plain":
        stored = gzip.compress(data, mtime=0)
        stored = stored[: len(stored) // 2] if compression == "gzip-cut" else stored
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(stored)
        policy, report = ResiduePolicy(strict=strict, max_length=max_length), SkipReport(str(path))
        try:
            read = read_inputs if inference else read_sequences
            records = list(read(path, policy, report))
        except InputError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e), str(e)
            return "error"
    assert report.n_read == report.n_used + report.n_skipped == len(records) + report.n_skipped, report.summary()
    assert len({r.id for r in records}) == len(records), "a duplicate id was used"
    if name.endswith((".fa", ".fa.gz")) and compression != "gzip-cut":
        text = data.decode("utf-8")  # it was read, so it is UTF-8
        lines = list(io.StringIO(text, newline=None))
        assert report.n_read == sum(ln.strip().startswith(">") for ln in lines), "a record was lost or invented"
    return "read"
