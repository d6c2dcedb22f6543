"""Sequence I/O: readers, round trips, the validation policy and skip reports."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from conftest import DATA, run_cli, write
from protlm.errors import InputError
from protlm.io import ResiduePolicy, SeqRecord, SkipReport, iter_fasta, read_sequences, write_fasta


def ids_seqs(path, **kw):
    return [(r.id, r.seq) for r in read_sequences(path, **kw)]


def test_real_fasta_multiline_and_last_record(swissprot50):
    recs = list(read_sequences(swissprot50))
    assert len(recs) == 50  # the seed code dropped the last record
    assert recs[0].id == "A0A183"
    assert recs[0].seq == "MSQQKQQSWKPPNVPKCSPPQRSNPCLAPYSTPCGAPHSEGCHSSSQRPEVQKPRRARQKLRCLSRGTTYHCKEEECEGD"


def test_fasta_round_trip_plain_gz_crlf_and_no_final_newline(tmp_path, swissprot50):
    recs = list(read_sequences(swissprot50))
    for name in ("out.fa", "out.fa.gz"):
        write_fasta(recs, tmp_path / name, width=37)
        assert list(read_sequences(tmp_path / name)) == recs
    text = (tmp_path / "out.fa").read_text()
    crlf = write(tmp_path / "crlf.fasta", text.rstrip("\n"), newline="\r\n")
    assert list(read_sequences(crlf)) == recs
    # gzip is detected by content, not by name
    (tmp_path / "hidden.fa").write_bytes(gzip.compress(text.encode()))
    assert list(read_sequences(tmp_path / "hidden.fa")) == recs


def test_single_line_records_and_description(tmp_path):
    f = write(tmp_path / "a.fa", ">P1 some protein OS=Homo\nMKTAYIAK\n>P2\nmktl*\n")
    recs = list(read_sequences(f))
    assert recs == [SeqRecord("P1", "MKTAYIAK", "some protein OS=Homo"), SeqRecord("P2", "MKTL")]


def test_rare_letters_mapped_to_x_or_rejected_when_strict(tmp_path):
    f = write(tmp_path / "a.fa", ">P1\nMUOBZJK\n>P2\nmuk\n")
    assert ids_seqs(f) == [("P1", "MXXXXXK"), ("P2", "MXK")]
    with pytest.raises(
        InputError, match=r"a.fa line 1 \(record P1\): rare residue 'U' at position 2 rejected by --strict"
    ):
        list(read_sequences(f, policy=ResiduePolicy(strict=True)))


@pytest.mark.parametrize(
    "text, line, record, message",
    [
        (">P1\nMKT\n>P2\nMK#L\n", 3, "P2", "invalid residue '#' at position 3"),
        (">P1\nMK1\n", 1, "P1", "invalid residue '1' at position 3"),
        (">P1\nMK*L\n", 1, "P1", "invalid residue '*' at position 3"),
        (">P1\nMK-L\n", 1, "P1", "invalid residue '-' at position 3"),
        ("MKTL\n>P1\nMK\n", 1, None, "sequence data before the first '>' header"),
        (">P1\nMK\n>\nMK\n", 3, None, "empty FASTA header"),
    ],
)
def test_malformed_fasta_names_file_line_record(tmp_path, text, line, record, message):
    f = write(tmp_path / "bad.fa", text)
    with pytest.raises(InputError) as err:
        list(read_sequences(f))
    assert err.value.line == line and err.value.record == record and message in str(err.value)
    assert str(err.value).startswith(f"{f} line {line}")


def test_binary_file_is_a_clear_error(tmp_path):
    f = tmp_path / "x.fa"
    f.write_bytes(b">P1\nMK\xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        list(read_sequences(f))


def test_skips_are_counted_never_silent(tmp_path):
    f = write(tmp_path / "a.fa", ">P1\nMKTL\n>P2\n\n>P1\nMKKK\n>P3\nMKTLLLLLLLL\n>P4\nMK\n")
    report = SkipReport(str(f))
    recs = list(read_sequences(f, policy=ResiduePolicy(max_length=5), report=report))
    assert [r.id for r in recs] == ["P1", "P4"]
    assert report.n_read == 5 == report.n_used + report.n_skipped
    assert report.skipped == {"empty sequence": 1, "duplicate id": 1, "longer than 5 residues": 1}
    assert "5 records read, 2 used, 3 skipped" in report.summary()
    assert any("line 5 (record P1): duplicate id" in e for e in report.examples)


def test_tsv_csv_parquet_named_columns(tmp_path, swissprot50):
    recs = list(read_sequences(swissprot50))[:10]
    df = pd.DataFrame({"acc": [r.id for r in recs], "seq": [r.seq for r in recs], "other": 1})
    df.to_csv(tmp_path / "a.tsv", sep="\t", index=False)
    df.to_csv(tmp_path / "a.csv.gz", index=False)
    df.to_parquet(tmp_path / "a.parquet")
    for name in ("a.tsv", "a.csv.gz", "a.parquet"):
        got = list(read_sequences(tmp_path / name, id_col="acc", seq_col="seq"))
        assert got == [SeqRecord(r.id, r.seq) for r in recs], name


def test_table_errors(tmp_path):
    f = write(tmp_path / "a.tsv", "id\tsequence\nP1\tMKT\nP2\tMK\textra\n")
    with pytest.raises(InputError, match=r"a.tsv line 3: expected 2 fields, found 3"):
        list(read_sequences(f))
    with pytest.raises(InputError, match=r"line 1: missing column\(s\) seq; the file has: id, sequence"):
        list(read_sequences(f, seq_col="seq"))
    bad = write(tmp_path / "b.csv", "id,sequence\nP1,MKT\nP2,MK%T\n")
    with pytest.raises(InputError, match=r"b.csv line 3 \(record P2\): invalid residue '%'"):
        list(read_sequences(bad))
    pq = write(tmp_path / "c.parquet", "not parquet")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        list(read_sequences(pq))
    with pytest.raises(InputError, match="file not found"):
        list(read_sequences(tmp_path / "missing.fa"))


def test_damaged_text_files_are_one_line_errors_naming_file_and_line(tmp_path, capsys):
    """A gzip stream cut short or corrupt, non-UTF-8 bytes and an overlong TSV field: exit 2, one line."""
    import gzip

    body = "".join(f">P{i}\nMKTAYIAKQRQISFVKSHFSRQ\n" for i in range(2000)).encode()
    packed = gzip.compress(body)
    cases = {
        "cut.fasta.gz": (packed[: len(packed) // 2], "truncated or corrupt gzip data"),
        "crc.fasta.gz": (packed[:-8] + b"\0" * 8, "truncated or corrupt gzip data"),
        "latin1.tsv": ("id\tsequence\nP1\tMKT\nP2\tMK\xe9\n".encode("latin-1"), "not UTF-8 text"),
        "wide.tsv": (b"id\tsequence\nP1\t" + b"M" * 200_000 + b"\n", "malformed table (field larger than field limit"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        code, _, err = run_cli(["tokenizer", "stats", "--tokenizer", str(DATA / "tokenizer_bpe300"), "--corpus",
                                str(path)], capsys)  # fmt: skip
        lines = err.strip().splitlines()
        assert code == 2 and "Traceback" not in err, (name, err)
        assert lines[-1].startswith(f"protlm: error: {path}") and message in lines[-1], (name, err)
        assert " line " in lines[-1], (name, err)


def test_token_cache_keys_do_not_collide_across_field_boundaries():
    from protlm.tokenization import load_tokenizer
    from protlm.tokenized import _digest

    tok = load_tokenizer(DATA / "tokenizer_bpe300")
    assert _digest(tok, ["a", "b"], ["MK", "VL"]) != _digest(tok, ["a\tMK\nb"], ["VL"])
    assert _digest(tok, ["a", "b"], ["MK", "VL"]) == _digest(tok, ["a", "b"], ["MK", "VL"])


def test_atomic_open_publishes_only_a_complete_file(tmp_path):
    from protlm.io.atomic import atomic_open

    out = tmp_path / "r.tsv"
    out.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_open(out) as fh:
        fh.write("half a ")
        raise RuntimeError("disk full")
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["r.tsv"]
    with atomic_open(out) as fh:
        fh.write("new\n")
    assert out.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["r.tsv"]


def test_a_huge_line_is_read_in_bounded_memory_and_skipped_as_too_long(tmp_path):
    """One 64 MiB sequence line in a 65 KB .fa.gz, read with a length limit: never held whole (the issue saw
    194 MiB), the record skipped and counted as too long, the next one read."""
    import tracemalloc

    path = tmp_path / "big.fa.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(">huge\n" + "M" * (64 << 20) + "\n>ok\nMKTAYIAK\n")
    assert path.stat().st_size < 200_000
    report = SkipReport(str(path))
    tracemalloc.start()
    records = list(read_sequences(path, ResiduePolicy(max_length=1000), report))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [r.id for r in records] == ["ok"]
    assert report.summary().endswith("2 records read, 1 used, 1 skipped (1 longer than 1000 residues)")
    assert peak < 16 << 20, f"peak {peak / 2**20:.0f} MiB"


def test_record_and_header_length_limits(tmp_path, monkeypatch):
    from protlm.io import fasta

    monkeypatch.setattr(fasta, "MAX_RECORD", 1000)
    long = write(tmp_path / "long.fa", ">a\nMKT\n>b desc\n" + "M" * 600 + "\n" + "K" * 600 + "\n")
    with pytest.raises(InputError, match=r"long.fa line 3 \(record b\): a record of over 1,000 characters"):
        list(iter_fasta(long))
    assert [len(r.seq) for r in iter_fasta(long, keep=10)] == [3, 10]  # cut short, never an error
    assert [r.truncated for r in iter_fasta(long, keep=10)] == [False, True]
    header = write(tmp_path / "header.fa", ">" + "x" * (fasta.LINE_PIECE + 5) + "\nMKT\n")
    with pytest.raises(InputError, match="line 1: a header line of over 1,048,576 characters"):
        list(iter_fasta(header))


def test_lines_longer_than_a_piece_read_exactly(tmp_path, monkeypatch):
    """Lines are read in pieces: a sequence line, a comment line and one holding '>' mid-line split across
    pieces read as one line would."""
    from protlm.io import fasta

    monkeypatch.setattr(fasta, "LINE_PIECE", 8)
    text = ">a d\nMKTAYIAKQRQISF\n;comment that is long >x\nVKSHF\n>b\nMK\n"
    recs = list(iter_fasta(write(tmp_path / "p.fa", text)))
    assert [(r.id, r.seq, r.line) for r in recs] == [("a", "MKTAYIAKQRQISFVKSHF", 1), ("b", "MK", 5)]
    assert [r.seq for r in iter_fasta(write(tmp_path / "q.fa", ">a\nMKTAYIA>KQRQ\n"))] == ["MKTAYIA>KQRQ"]


@pytest.mark.parametrize(
    "seq, nucleotide",
    [("ACGT" * 5, True), ("acgu" * 5 + "n", True), ("ACGT" * 5 + "*", True), ("ACGT" * 4 + "ACG", False),
     ("ACGT" * 10 + "M", False), ("MKTAYIAKQRQISFVKSHFS", False), ("N" * 19, False)],
)  # fmt: skip
def test_nucleotide_sequences_warn_or_fail_under_strict(tmp_path, seq, nucleotide):
    from protlm.io import looks_nucleotide

    assert looks_nucleotide(seq) is nucleotide
    path = write(tmp_path / "n.fa", f">n1\n{seq}\n>p1\nMKTAYIAK\n")
    report = SkipReport(str(path))
    assert len(list(read_sequences(path, ResiduePolicy(), report))) == 2 and report.nucleotide == int(nucleotide)
    if nucleotide:
        assert report.summary().endswith("warning: 1 record looks like a nucleotide sequence (only A, C, G, T, "
                                         "U, N; first: line 1 (record n1)); --strict rejects them")  # fmt: skip
        with pytest.raises(InputError, match=r"line 1 \(record n1\): looks like a nucleotide sequence"):
            list(read_sequences(path, ResiduePolicy(strict=True)))
    else:
        assert "warning" not in report.summary()
        assert len(list(read_sequences(path, ResiduePolicy(strict="U" not in seq.upper())))) == 2


def test_pair_store_counts_and_strict_rejects_nucleotide_pairs(tmp_path):
    """The pair store's SQL path applies the same rule as the Python readers."""
    from protlm.store.pairs import prepare_pair_store

    dna = "ACGTTGCAACGTAGCTAGCTAGG"
    table = write(tmp_path / "p.tsv", f"id_a\tid_b\tseq_a\tseq_b\nP1\tP2\tMKTAYIAK\t{dna}\nP3\tP4\tMKV\tMKL\n")
    tok = Path(__file__).parent / "data" / "tokenizer_bpe300"
    meta = prepare_pair_store(table, tok, tmp_path / "s", ResiduePolicy())
    assert meta["skip_report"]["nucleotide"] == 1 and meta["skip_report"]["nucleotide_first"] == "line 2 (record P1|P2)"
    with pytest.raises(InputError, match=r"p.tsv line 2 \(record P1\|P2\): looks like a nucleotide sequence"):
        prepare_pair_store(table, tok, tmp_path / "t", ResiduePolicy(strict=True))


@pytest.mark.parametrize("value, label", [(1, 1), (0, 0), (True, 1), (1.0, 1), ("1", 1), (" 0 ", 0), ("yes", None),
                                          (2, None), (0.5, None), (None, None), ([1], None), (b"1", 1)])  # fmt: skip
def test_lmdb_interaction_values(value, label):
    from protlm.pairs.lmdb_ppi import _binary

    assert _binary(value) == label


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="measures VmHWM (Linux)")
def test_parquet_of_one_long_string_repeated_is_read_in_bounded_memory(tmp_path):
    """A 24 KB Parquet file holding one 256 KiB sequence 2,000 times (dictionary-encoded, 500 MiB decoded):
    read in batches sized from its longest dictionary value, not 8,192 rows at once (1.6 GiB before)."""
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "dict.parquet"
    pq.write_table(pa.table({"id": [f"P{i}" for i in range(2000)], "sequence": ["M" * (256 << 10)] * 2000}), path)
    assert path.stat().st_size < 100_000
    code = (  # VmHWM: the child's own peak (ru_maxrss can carry the parent's when spawned by vfork)
        "import sys\nfrom protlm.io import iter_table\n"
        "n = sum(len(r.seq) for r in iter_table(sys.argv[1]))\n"
        "hwm = next(line for line in open('/proc/self/status') if line.startswith('VmHWM:'))\n"
        "print(n, int(hwm.split()[1]) // 1024)\n"
    )
    small = tmp_path / "small.parquet"  # the baseline: the same reader, pyarrow loaded, one short row
    pq.write_table(pa.table({"id": ["P1"], "sequence": ["MKTAYIAK"]}), small)
    base = subprocess.run([sys.executable, "-c", code, str(small)], text=True, capture_output=True, check=True)
    run = subprocess.run([sys.executable, "-c", code, str(path)], text=True, capture_output=True, check=True)
    residues, peak = map(int, run.stdout.split())
    start = int(base.stdout.split()[1])
    assert residues == 2000 * (256 << 10)
    assert peak - start < 512, f"{peak} MiB peak, {start} MiB reading one row"  # 1,590 MiB peak before
