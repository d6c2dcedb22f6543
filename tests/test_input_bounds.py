"""One huge field in an input file costs a bounded amount of memory, then one line of error (SECURITY.md, "Size
bounds"): a 1 GiB table line, a 1 GiB STRING header, a Parquet page of 320 MiB from a file of kilobytes, an id
of a million characters. Each runs `python -m protlm` in a subprocess and reads that child's own peak RSS
(`PEAK`); honest files near the bounds are read whole.

`PEAK_MB` is the bound asserted: the commands peak at 50-300 MB here on these inputs (before the bounds:
2.2 GB for the table line, 2.1 GB for the header, 3.2 GB for the Parquet value, 9.7 GB for the id).
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import DATA
from protlm.errors import InputError
from protlm.io import iter_table, iter_table_rows, read_sequences
from protlm.io import tables as tables_module
from protlm.io.parquet_pages import MAX_PAGE, check_pages
from protlm.io.validate import MAX_ID

TOK = DATA / "tokenizer_bpe300"
PEAK_MB = 600
GIB = 1 << 30


# Runs ARGV and prints its peak RSS (KiB): measured from a small parent, since a child forked from pytest would
# count pytest's own pages in its ru_maxrss.
PEAK = """import resource, subprocess, sys
code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code if code >= 0 else 128 - code)"""


def protlm(*argv) -> tuple[int, str, float]:
    """(exit status, stderr, peak RSS in MB) of `python -m protlm ARGV` in a child process."""
    run = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "protlm", *map(str, argv)],
                         capture_output=True, text=True)  # fmt: skip
    return run.returncode, run.stderr, int(run.stdout.split()[-1]) / 1024  # ru_maxrss: KiB on Linux


def assert_bounded_error(argv: list, path: Path, *fragments: str) -> None:
    code, err, peak = protlm(*argv)
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.startswith("protlm: error:")]
    assert len(lines) == 1 and len(lines[0]) < 400, err
    for f in (str(path), *fragments):
        assert f in lines[0], (f, err)
    assert peak < PEAK_MB, f"peak RSS {peak:.0f} MB"


def gzip_line(path: Path, head: bytes, body: bytes, tail: bytes, repeat: int) -> Path:
    """A gzip file `head + body * repeat + tail`, small on disk: one member compressed once and repeated
    (gzip readers read concatenated members as one stream)."""
    member = gzip.compress(body, compresslevel=9, mtime=0)
    with open(path, "wb") as fh:
        fh.write(gzip.compress(head, mtime=0))
        for _ in range(repeat):
            fh.write(member)
        fh.write(gzip.compress(tail, mtime=0))
    return path


# --- 1. one 1 GiB line in a TSV / CSV (plain: a sparse file of NUL bytes; gzip'd: 'M' * 1 GiB) -------------------
@pytest.mark.parametrize("name", ["big.tsv", "big.csv", "big.tsv.gz"])
def test_a_1gib_table_line_is_refused_in_bounded_memory(tmp_path, name):
    path = tmp_path / name
    sep = b"," if ".csv" in name else b"\t"
    if name.endswith(".gz"):
        gzip_line(path, b"id" + sep + b"sequence\nP1" + sep, b"M" * (16 << 20), b"\n", GIB // (16 << 20))
    else:
        with open(path, "wb") as fh:
            fh.write(b"id" + sep + b"sequence\nP1" + sep)
            fh.truncate(fh.tell() + GIB)
    argv = ["tokenizer", "stats", "--tokenizer", TOK, "--corpus", path]
    assert_bounded_error(argv, path, "line 2: a line of over 8,388,608 characters")


def test_a_long_table_line_under_the_bound_is_read_whole(tmp_path):
    """64 fields at csv's limit (131,072 characters) make a 8.4M-character line: read, not refused."""
    fields = ["P1", "M" * 131_000] + [f"{k}" * 131_000 for k in range(10)] * 6
    path = tmp_path / "wide.tsv"
    path.write_text("\t".join(["id", "sequence"] + [f"c{k}" for k in range(60)]) + "\n" + "\t".join(fields) + "\n")
    assert len(fields) * 131_000 > tables_module.MAX_LINE * 0.9
    assert [(r.id, len(r.seq)) for r in iter_table(path)] == [("P1", 131_000)]


def test_a_row_of_quoted_fields_over_many_lines_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(tables_module, "MAX_LINE", 100)
    path = tmp_path / "q.csv"
    path.write_text('id,sequence\nP1,"' + "MKV\n" * 40 + '"\nP2,MKV\n')
    with pytest.raises(InputError, match=r"q.csv line 26: a row of over 100 characters"):
        list(iter_table_rows(path, ["id", "sequence"]))
    path.write_text('id,sequence\nP1,"' + "MKV\n" * 20 + '"\nP2,' + "M" * 96 + "\n")  # rows of 86 and 100
    assert [len(row["sequence"]) for _, row in iter_table_rows(path, ["id", "sequence"])] == [79, 96]


@pytest.mark.parametrize("reader", ["tcr background", "deepsol", "groups"])
def test_other_line_readers_are_bounded(tmp_path, monkeypatch, reader):
    """The task and pair readers that read lines themselves go through the same bounded reader."""
    monkeypatch.setattr(tables_module, "MAX_LINE", 100)
    long = "M" * 101 + "\n"
    if reader == "tcr background":
        from protlm.tasks.tcr import read_background

        path = tmp_path / "bg.txt"
        path.write_text("CASSL\n" + long)
        call = lambda: read_background(path)  # noqa: E731
    elif reader == "deepsol":
        from protlm.tasks.readers import read_deepsol

        path = tmp_path / "train_src"
        path.write_text("MKV\n" + long)
        (tmp_path / "train_tgt").write_text("1\n0\n")
        call = lambda: read_deepsol(tmp_path)  # noqa: E731
    else:
        from protlm.pairs.build import read_groups

        path = tmp_path / "groups.tsv"
        path.write_text("A\tB\n" + long)
        call = lambda: read_groups(path)  # noqa: E731
    with pytest.raises(InputError, match=f"{path.name} line 2: a line of over 100 characters"):
        call()


# --- 2. one 1 GiB header line in a STRING links file --------------------------------------------------------------
def test_a_1gib_string_links_header_is_refused_in_bounded_memory(tmp_path):
    links = gzip_line(tmp_path / "links.txt.gz", b"", b"protein1" * (2 << 20), b" protein2 combined_score\n", 64)
    seqs = tmp_path / "seqs.fa"
    seqs.write_text(">9606.A\nMKVLA\n>9606.B\nMKTAY\n")
    argv = ["pairs", "build-string", "--links", links, "--sequences", seqs, "--out", tmp_path / "out"]
    assert_bounded_error(argv, links, "line 1: a line of over 1,048,576 characters")
    assert not (tmp_path / "out" / "report.json").exists()


# --- 3. one huge value in a Parquet column --------------------------------------------------------------------------
def write_parquet(path: Path, code: str) -> Path:
    """Run `code` (`pa`, `pq` and `path` defined) in a child: a huge value never enters pytest's memory."""
    setup = f"import pyarrow as pa, pyarrow.parquet as pq\npath = {str(path)!r}\n"
    subprocess.run([sys.executable, "-c", setup + code], check=True)
    return path


@pytest.fixture(scope="module")
def huge_parquet(tmp_path_factory) -> Path:
    """A file of a few kilobytes holding one 320M-residue sequence (zstd, one dictionary page)."""
    path = tmp_path_factory.mktemp("pq") / "huge.parquet"
    code = """pq.write_table(pa.table({"id": ["P1", "P2"], "sequence": ["M" * (320 << 20), "MKV"]}), path,
    compression="zstd")"""
    write_parquet(path, code)
    assert path.stat().st_size < 100_000
    return path


def test_a_huge_parquet_page_is_refused_before_it_is_decompressed(huge_parquet):
    argv = ["tokenizer", "stats", "--tokenizer", TOK, "--corpus", huge_parquet]
    assert_bounded_error(argv, huge_parquet, "row group 0, column 'sequence': a page of 335,544,3",
                         f"over the {MAX_PAGE:,} allowed")  # fmt: skip


def test_a_huge_parquet_page_is_refused_by_pairs_prepare_too(tmp_path):
    """`pairs prepare` reads Parquet pair tables through DuckDB: the pages are checked first."""
    code = f"""pq.write_table(pa.table({{"id_a": ["A"], "id_b": ["B"], "seq_a": ["M" * {MAX_PAGE + 1000}],
    "seq_b": ["MKV"]}}), path, compression="zstd")"""
    path = write_parquet(tmp_path / "pairs.parquet", code)
    argv = ["pairs", "prepare", path, "--tokenizer", TOK, "--out", tmp_path / "out"]
    assert_bounded_error(argv, path, "row group 0, column 'seq_a': a page of")


def test_a_parquet_value_over_the_residue_limit_is_refused_as_fasta_does(tmp_path, monkeypatch):
    monkeypatch.setattr(tables_module, "MAX_RECORD", 1000)
    path = tmp_path / "long.parquet"
    pq.write_table(pa.table({"id": ["P1", "P2", "P3"], "sequence": ["MKV", "M" * 1001, "MKV"]}), path)
    with pytest.raises(InputError, match=r"long.parquet line 3: a value of over 1,000 characters in column 'sequ"):
        list(read_sequences(path))


def test_real_writers_pages_are_never_refused(tmp_path):
    """Files of many sequences as pyarrow, pandas and DuckDB write them: every page far under `MAX_PAGE`."""
    import duckdb
    import pandas as pd

    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=n)) for n in rng.integers(50, 3000, 3000)]
    table = pa.table({"id": [f"P{k:05d}" for k in range(len(seqs))], "sequence": seqs})
    paths = {w: tmp_path / f"{w}.parquet" for w in ("pyarrow", "pandas", "duckdb")}
    pq.write_table(table, paths["pyarrow"])
    table.to_pandas().to_parquet(paths["pandas"], index=False)
    con = duckdb.connect()
    con.register("t", table)
    con.execute(f"COPY t TO '{paths['duckdb']}' (FORMAT parquet)")
    for path in paths.values():
        check_pages(path, pq.ParquetFile(path), ["id", "sequence"], limit=8 << 20)  # a limit 16 x smaller
        assert [r.seq for r in read_sequences(path)] == seqs
    assert pd.read_parquet(paths["duckdb"]).shape == (3000, 2)


@pytest.mark.parametrize("offset", [0, 1, 2, 3, 5, 8, 13])
def test_a_damaged_page_header_is_one_input_error(tmp_path, offset):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"id": ["P1", "P2"], "sequence": ["MKV", "MKT"]}), path, use_dictionary=False)
    pf = pq.ParquetFile(path)
    start = pf.metadata.row_group(0).column(1).data_page_offset
    data = bytearray(path.read_bytes())
    data[start + offset] ^= 0xFF
    path.write_bytes(bytes(data))
    try:
        check_pages(path, pq.ParquetFile(path), ["sequence"])
    except InputError as e:
        assert "d.parquet" in str(e)


# --- 4. one id of a million characters ------------------------------------------------------------------------------
def test_a_million_character_id_in_pairs_build_is_refused_in_bounded_memory(tmp_path):
    long = "Q" * 1_000_000
    ids = [f"P{k:04d}" for k in range(400)] + [long]
    seqs = tmp_path / "seqs.fa"
    seqs.write_text("".join(f">{i}\nMKTAYIAKQRQ\n" for i in ids))
    pairs = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"id_a": ids[0:400:2] + [long], "id_b": ids[1:400:2] + ["P0000"]}), pairs)
    argv = ["pairs", "build", "--pairs", pairs, "--sequences", seqs, "--out", tmp_path / "o", "--split", "random"]
    assert_bounded_error(argv, pairs, "line 202 (record QQQQ", "an id of 1,000,000 characters (at most 1,024)")


@pytest.mark.parametrize("where", ["fasta", "tsv"])
def test_ids_are_bounded_for_every_reader(tmp_path, where):
    long = "Q" * (MAX_ID + 1)
    if where == "fasta":
        path = tmp_path / "s.fa"
        path.write_text(f">P1\nMKV\n>{long}\nMKV\n")
    else:
        path = tmp_path / "s.tsv"
        path.write_text(f"id\tsequence\nP1\tMKV\n{long}\tMKV\n")
    with pytest.raises(InputError, match=f"line 3 \\(record Q{{24}}\\.\\.\\.\\): an id of {MAX_ID + 1:,} characters"):
        list(read_sequences(path))
    from protlm.io import ResiduePolicy, SkipReport
    from protlm.io.inference import read_inputs

    with pytest.raises(InputError, match=f"an id of {MAX_ID + 1:,} characters"):
        list(read_inputs(path, ResiduePolicy(), SkipReport(str(path))))
    path.write_text(path.read_text().replace(long, "Q" * MAX_ID))
    assert len(list(read_sequences(path))) == 2


def test_ids_are_bounded_in_pair_tables_streamed_or_in_sql(tmp_path):
    """`read_pairs` and `pairs prepare` (DuckDB) refuse the same row with the same line."""
    from protlm.pairs.table import read_pairs

    long = "Q" * (MAX_ID + 1)
    path = tmp_path / "pairs.tsv"
    path.write_text(f"id_a\tid_b\tseq_a\tseq_b\nA\tB\tMKV\tMKT\n{long}\tB\tMKV\tMKT\n")
    with pytest.raises(InputError, match=f"pairs.tsv line 3 .*: an id of {MAX_ID + 1:,} characters"):
        list(read_pairs(path))
    argv = ["pairs", "prepare", path, "--tokenizer", TOK, "--out", tmp_path / "out"]
    assert_bounded_error(argv, path, "line 3 (record QQQ", f"an id of {MAX_ID + 1:,} characters")


def test_negative_pool_memory_does_not_scale_with_the_longest_id():
    """Ids are held as references, never at the longest id's width (2,000 ids x 4 bytes x 100,000 = 800 MB)."""
    import tracemalloc

    from protlm.pairs.negatives import NegativePool

    ids = [f"P{k:05d}" for k in range(1999)] + ["Q" * 100_000]
    known = [(ids[k], ids[k + 1]) for k in range(0, 2000, 2)]
    tracemalloc.start()
    pool = NegativePool.from_ids(np.arange(len(ids)), ids, known)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak / 2**20:.0f} MiB"
    assert len(pool.known) == 1000 and len(set(pool.codes.tolist())) == 2000
