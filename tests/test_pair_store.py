"""Pair stores: the same pairs, counts and errors as `read_pairs`, as index arrays into one protein
store; known links as sorted keys; the one negative sampler; pre-training on a store."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from conftest import DATA, run_cli, write
from protlm.errors import InputError, ProtlmError
from protlm.io import ResiduePolicy, SkipReport
from protlm.pairs import read_pairs
from protlm.pairs.negatives import NegativePool, organism, pair_keys
from protlm.store.pairs import PairStore, prepare_pair_store
from protlm.tokenization import load_tokenizer

TOK = DATA / "tokenizer_bpe300"
SPLIT_CODE = {"train": 0, "dev": 1, "test": 2}


def messy_table(tmp_path: Path) -> Path:
    """pairs_small.tsv plus a self-pair, an empty sequence, a reversed duplicate, a lowercase copy of a
    sequence (the same protein once cleaned), and a pair that is valid but later in the file."""
    lines = (DATA / "pairs_small.tsv").read_text().splitlines()
    a = lines[1].split("\t")
    extra = [
        f"{a[0]}\t{a[0]}\t{a[2]}\t{a[2]}\t1\ttrain",  # self-pair
        "E1\tE2\t\tMKV\t1\ttrain",  # empty sequence
        f"{a[1]}\t{a[0]}\t{a[3]}\t{a[2]}\t0\ttrain",  # the first pair again, reversed
        f"{a[0]}\tNEW1\t{a[2].lower()}*\tMKVLAAGU\t0\tdev",  # same protein, lower case + stop; U -> X
    ]
    return write(tmp_path / "pairs.tsv", "\n".join(lines + extra) + "\n")


def expected(path: Path, policy=ResiduePolicy()):
    report = SkipReport(str(path))
    return list(read_pairs(path, policy, report)), report


def test_store_holds_exactly_what_read_pairs_reads(tmp_path):
    table = messy_table(tmp_path)
    meta = prepare_pair_store(table, TOK, tmp_path / "ps")
    store = PairStore(tmp_path / "ps")
    pairs, report = expected(table)
    rep = meta["skip_report"]
    assert (rep["read"], rep["used"], rep["skipped"]) == (report.n_read, report.n_used, dict(report.skipped))
    assert rep["skipped"] == {"self-pair": 1, "empty sequence": 1, "duplicate pair": 1}
    assert rep["examples"][0].startswith("line 42 (record ")
    ids = [store.proteins.ids[i] for i in range(len(store.proteins))]
    assert ids == sorted(set(ids)) and len(ids) == len({i for p in pairs for i in (p.id_a, p.id_b)})
    got = [
        (ids[a], ids[b], int(lab), int(s)) for (a, b), lab, s in zip(store.pairs, store.label, store.split, strict=True)
    ]
    assert got == [(p.id_a, p.id_b, p.label, SPLIT_CODE[p.split]) for p in pairs]  # table order kept
    tok = load_tokenizer(TOK).backend
    seq = {p.id_a: p.seq_a for p in pairs} | {p.id_b: p.seq_b for p in pairs}
    for i, pid in enumerate(ids):
        assert store.proteins.get(i).tolist() == tok.encode(seq[pid], add_special_tokens=False).ids
    assert seq["NEW1"] == "MKVLAAGX"
    keys = pair_keys(store.pairs[store.label == 1, 0], store.pairs[store.label == 1, 1])
    assert store.known.tolist() == np.unique(keys).tolist()
    assert (store.organism == -1).all()
    assert meta["sizes"]["dev"] == {"positives": 0, "negatives": 1} or meta["sizes"]["dev"]["negatives"] >= 1


def test_parquet_shards_and_tsv_give_identical_arrays(tmp_path):
    table = messy_table(tmp_path)
    df = pacsv.read_csv(table, parse_options=pacsv.ParseOptions(delimiter="\t"),
                         convert_options=pacsv.ConvertOptions(strings_can_be_null=False,
                                                               column_types={"label": pa.int64()}))  # fmt: skip
    shards = tmp_path / "shards"
    shards.mkdir()
    pq.write_table(df.slice(0, 20), shards / "pairs-0.parquet")
    pq.write_table(df.slice(20), shards / "pairs-1.parquet")
    prepare_pair_store(table, TOK, tmp_path / "a")
    prepare_pair_store(shards, TOK, tmp_path / "b", workers=2)
    for name in ("pairs", "label", "split", "organism", "known"):
        assert np.array_equal(np.load(tmp_path / "a" / f"{name}.npy"), np.load(tmp_path / "b" / f"{name}.npy")), name
    a, b = (json.loads((tmp_path / d / "pairs.json").read_text())["skip_report"] for d in "ab")
    assert (a["read"], a["used"], a["skipped"]) == (b["read"], b["used"], b["skipped"])


def test_string_ids_get_organisms_and_build_string_output_feeds_the_store(tmp_path, capsys):
    code, _, _ = run_cli(["pairs", "build-string", "--links", str(DATA / "string_links.txt.gz"), "--sequences",
                          str(DATA / "string_sequences.fa.gz"), "--out", str(tmp_path / "s"), "--min-score", "400"],
                         capsys)  # fmt: skip
    assert code in (0, None)
    code, out, err = run_cli(["pairs", "prepare", str(tmp_path / "s"), "--tokenizer", str(TOK), "--out",
                              str(tmp_path / "ps")], capsys)  # fmt: skip
    assert code in (0, None) and "pair store" in out
    store = PairStore(tmp_path / "ps")
    rows = list(read_pairs(tmp_path / "s"))
    assert len(store) == len(rows)
    for i in range(len(store.proteins)):
        assert store.organism[i] == int(organism(store.proteins.ids[i]))
    code, out, _ = run_cli(["corpus", "info", str(tmp_path / "ps")], capsys)
    assert json.loads(out)["pairs"] == len(rows)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("A\tB\tMKT\tMK1\t1\ttrain", r"pairs.tsv line 3 \(record A\|B\): invalid residue '1' at position 3"),
        ("A\tB\tMKT\tMKL\tyes\ttrain", r"pairs.tsv line 3 \(record A\|B\): label must be 0 or 1, found 'yes'"),
        ("A\tB\tMKT\tMKL\t1\tval", r"pairs.tsv line 3 \(record A\|B\): split must be one of train, dev, test"),
        ("C\tA\tMKL\tMKV\t1\ttrain", r"pairs.tsv line 3: protein 'A' has another sequence than at line 2"),
    ],
)
def test_bad_rows_name_file_line_and_record(tmp_path, row, message):
    table = write(tmp_path / "pairs.tsv", f"id_a\tid_b\tseq_a\tseq_b\tlabel\tsplit\nA\tB\tMKT\tMKL\t1\ttrain\n{row}\n")
    with pytest.raises(InputError, match=message):
        prepare_pair_store(table, TOK, tmp_path / "ps")
    assert not (tmp_path / "ps").exists() and not list(tmp_path.glob(".ps.tmp-*/pairs.json"))


def test_cli_errors_exit_2_and_stores_are_never_silently_reused(tmp_path, capsys):
    table = write(tmp_path / "pairs.tsv", "id_a\tid_b\tseq_a\nA\tB\tMKT\n")
    code, _, err = run_cli(["pairs", "prepare", str(table), "--tokenizer", str(TOK), "--out", str(tmp_path / "o")],
                           capsys)  # fmt: skip
    assert code == 2 and "missing column(s) seq_b" in err and len(err.strip().splitlines()) == 1
    prepare_pair_store(DATA / "pairs_small.tsv", TOK, tmp_path / "ps")
    again = prepare_pair_store(DATA / "pairs_small.tsv", TOK, tmp_path / "ps")  # same fingerprint: kept
    assert again["pairs"] == PairStore(tmp_path / "ps").meta["pairs"]
    with pytest.raises(ProtlmError, match="different policy"):
        prepare_pair_store(DATA / "pairs_small.tsv", TOK, tmp_path / "ps", ResiduePolicy(strict=True))
    (tmp_path / "ps" / "label.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(InputError, match="label.npy: unreadable array"):
        PairStore(tmp_path / "ps")


def test_pretrain_reads_the_same_pairs_from_a_table_and_from_its_store(tmp_path):
    from protlm.train.config import PretrainConfig
    from protlm.train.pretrain import build_data

    tok = load_tokenizer(TOK)
    prepare_pair_store(DATA / "pairs_small.tsv", TOK, tmp_path / "ps")
    runs = []
    for pairs in (str(DATA / "pairs_small.tsv"), str(tmp_path / "ps")):
        cfg = PretrainConfig(tokenizer=str(TOK), corpus=str(DATA / "swissprot_50.fasta"), pairs=pairs,
                             out=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"))  # fmt: skip
        data, held, _ = build_data(cfg, tok, 256, lambda s: None)
        plan = data.epoch_batches(0, 1024)
        runs.append(([plan[b] for b in range(len(plan))], held, data.binding.tolist()))
    assert runs[0] == runs[1] and runs[0][2]
    other = tmp_path / "tok2"
    other.mkdir()
    text = json.loads((TOK / "tokenizer.json").read_text())
    text["added_tokens"][0]["content"] = "<S>"
    (other / "tokenizer.json").write_text(json.dumps(text))
    with pytest.raises(ProtlmError, match="another tokenizer"):
        cfg = PretrainConfig(tokenizer=str(other), pairs=str(tmp_path / "ps"), out=str(tmp_path / "r2"))
        from protlm.train.pretrain import open_pair_store

        open_pair_store(cfg, tok, lambda s: None)


def test_residue_policy_sql_agrees_with_clean():
    import duckdb

    rng = random.Random(0)
    letters = "ACDEFGHIKLMNPQRSTVWYXUOBZJacdxuobzj*-1 "
    seqs = ["".join(rng.choice(letters) for _ in range(rng.randint(0, 6))) for _ in range(3000)]
    for policy in (ResiduePolicy(), ResiduePolicy(strict=True)):
        con = duckdb.connect()
        con.register("t", pa.table({"s": seqs}))
        rows = con.execute(f"SELECT s, regexp_full_match(s, $p), {policy.sql_clean('s')} FROM t",
                           {"p": policy.pattern()}).fetchall()  # fmt: skip
        for s, ok, cleaned in rows:
            try:
                want = policy.clean(s)
            except ValueError:
                want = None
            assert ok == (want is not None) and (want is None or cleaned == want), s


def test_distinct_negatives_follow_every_rule():
    ids = [f"9606.P{i}" for i in range(6)] + [f"10090.M{i}" for i in range(6)] + ["Q1", "Q2"]
    known = [(ids[0], ids[1]), (ids[6], ids[7])]
    pool = NegativePool.from_ids(np.arange(len(ids)), ids, known)
    drawn = pool.draw(40, np.random.default_rng(0), distinct=True)
    keys = {tuple(sorted(p)) for p in drawn.tolist()}
    assert len(keys) == len(drawn) == 29  # every pair within an organism (15 + 15 + 1) but the 2 known
    assert all(organism(ids[a]) == organism(ids[b]) and a != b for a, b in keys)
    assert (0, 1) not in keys and (6, 7) not in keys


def test_assembly_store_keeps_every_chain_in_order_and_feeds_the_mixture(tmp_path):
    from protlm.io import iter_fasta
    from protlm.pairs.assemblies import read_assemblies
    from protlm.store.assemblies import AssemblyStore, prepare_assembly_store
    from protlm.train.config import PretrainConfig
    from protlm.train.pretrain import build_data

    seqs = [r.seq for r in iter_fasta(DATA / "swissprot_50.fasta")]
    fasta = write(tmp_path / "complexes.fasta", f">c1\n{seqs[0][:40]}:{seqs[1][:30]}:{seqs[2][:20]}\n"
                                                f">c2\n{seqs[3][:25]}:{seqs[4][:35]}\n>c3\n{seqs[5]}:{seqs[6]}\n"
                                                f">c1\n{seqs[7]}:{seqs[8]}\n")  # fmt: skip
    meta = prepare_assembly_store(fasta, None, TOK, tmp_path / "as", ResiduePolicy(max_length=300))
    store = AssemblyStore(tmp_path / "as")
    want = [a for a in read_assemblies(fasta) if max(map(len, a.seqs)) <= 300]
    got = [tuple(store.proteins.ids[int(i)] for i in store.members[store.offsets[k] : store.offsets[k + 1]])
           for k in range(len(store))]  # fmt: skip
    assert got == [a.member_ids for a in want] and len(want) < 3
    rep = meta["skip_report"]
    assert rep["read"] == 4 == rep["used"] + sum(rep["skipped"].values()) and rep["skipped"]["duplicate id"] == 1
    assert any(k.startswith("assemblies with a protein skipped (longer than 300") for k in rep["skipped"])
    cfg = PretrainConfig(tokenizer=str(TOK), corpus="", assemblies=str(fasta), out=str(tmp_path / "run"),
                         cache_dir=str(tmp_path / "cache"))  # fmt: skip
    data, _, _ = build_data(cfg, load_tokenizer(TOK), 64, lambda s: None)
    assert data.cropped == {"assemblies longer than 64 tokens": 1} and len(data.assemblies) == 3  # c3 is cropped
    assert not data.skipped
    examples, lengths, _ = data.epoch_examples(0)
    assert sorted(examples[k] for k in range(len(examples))) == sorted(data.assemblies[k] for k in range(3))
    tok = load_tokenizer(TOK).backend
    chains = [tok.encode(s[:n], add_special_tokens=False).ids for s, n in ((seqs[3], 25), (seqs[4], 35))]
    k = next(k for k in range(len(examples)) if len(examples[k]) == 2 and lengths[k] < 64)  # c2 (c3 is cropped to 64)
    assert int(lengths[k]) == sum(len(c) + 2 for c in chains)
    assert [data.tset.get(i).tolist() for i in examples[k]] == chains


def test_hostile_file_names_and_ids_stay_data(tmp_path):
    """Paths and ids go to DuckDB as bound parameters: quotes and SQL in them are plain text."""
    rows = "id_a\tid_b\tseq_a\tseq_b\nx'); DROP TABLE rows; --\tB\"\tMKT\tMKL\n"
    table = write(tmp_path / "o'brien; SELECT 1.tsv", rows)
    meta = prepare_pair_store(table, TOK, tmp_path / "it's a store")
    store = PairStore(tmp_path / "it's a store")
    assert meta["pairs"] == 1 and sorted(store.proteins.ids[i] for i in range(2)) == ['B"', "x'); DROP TABLE rows; --"]
