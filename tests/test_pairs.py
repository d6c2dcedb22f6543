"""Pair sets: generic id-pair source, strict split, negative sampling, reports, the built-in set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write
from protlm.cli import main
from protlm.errors import InputError
from protlm.hashing import bucket, sql_unit, unit
from protlm.io import SkipReport
from protlm.pairs import (
    builtin_pairs,
    pairs_stats,
    read_id_pairs,
    read_pairs,
    sample_negatives,
    split_pairs,
)
from protlm.pairs.splits import empty_split_warning
from protlm.pairs.string import StringOptions


def test_generic_source_reports_missing_self_and_duplicates(data_dir):
    report = SkipReport("ppi")
    pairs = list(read_id_pairs(data_dir / "ppi_pairs_small.tsv", data_dir / "ppi_sequences.fasta", report=report))
    assert report.n_read == 83 == report.n_used + report.n_skipped
    assert len(pairs) == 80 and all(p.id_a < p.id_b and p.label == 1 for p in pairs)
    assert report.skipped == {"duplicate pair": 1, "self-pair": 1, "id without a sequence in ppi_sequences.fasta": 1}


def test_strict_split_has_no_protein_overlap_and_negatives_are_never_known(data_dir):
    pairs = list(read_id_pairs(data_dir / "ppi_pairs_small.tsv", data_dir / "ppi_sequences.fasta"))
    kept, dropped = split_pairs(pairs, "strict", seed=1)
    assert len(kept) + dropped["pair across strict splits"] == len(pairs)
    proteins = {s: {i for p in kept if p.split == s for i in (p.id_a, p.id_b)} for s in ("train", "dev", "test")}
    assert not proteins["train"] & proteins["test"] and not proteins["train"] & proteins["dev"]
    assert not proteins["dev"] & proteins["test"]
    negatives = sample_negatives(kept, 1.0, seed=0)
    known = {(p.id_a, p.id_b) for p in pairs}
    assert all((n.id_a, n.id_b) not in known and n.id_a != n.id_b and n.label == 0 for n in negatives)
    for n in negatives:  # negatives stay inside their split's proteins
        assert {n.id_a, n.id_b} <= proteins[n.split]
    random_kept, none_dropped = split_pairs(pairs, "random")
    assert len(random_kept) == len(pairs) and not none_dropped


def test_build_and_stats_cli(tmp_path, data_dir, capsys):
    with pytest.raises(SystemExit) as e:
        main(["pairs", "build", "--pairs", str(data_dir / "ppi_pairs_small.tsv"), "--sequences",
              str(data_dir / "ppi_sequences.fasta"), "--out", str(tmp_path / "p")])  # fmt: skip
    assert e.value.code in (0, None)
    report = json.loads((tmp_path / "p" / "report.json").read_text())
    rows = list(read_pairs(tmp_path / "p" / "pairs.parquet"))
    assert report["rows"] == len(rows)
    sizes = report["sizes"]
    assert sum(v["positives"] for v in sizes.values()) + report["dropped"]["pair across strict splits"] == 80
    short = report["negatives_short"]
    assert all(v["positives"] == v["negatives"] + short.get(k, 0) for k, v in sizes.items())
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["pairs", "stats", str(tmp_path / "p"), "--tokenizer", str(data_dir / "tokenizer_bpe300")])
    stats = json.loads(capsys.readouterr().out)
    assert stats["pairs"] == len(rows) and stats["tokens_per_pair"]["max"] > 0


def test_strict_split_with_an_empty_dev_warns_and_says_what_to_do(tmp_path, data_dir, capsys):
    """80 pairs of 96 proteins: a strict split left dev without a pair and said nothing."""
    args = ["pairs", "build", "--pairs", str(data_dir / "ppi_pairs_small.tsv"), "--sequences",
            str(data_dir / "ppi_sequences.fasta")]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main([*args, "--out", str(tmp_path / "strict")])
    err = capsys.readouterr().err
    assert e.value.code in (0, None), err
    report = json.loads((tmp_path / "strict" / "report.json").read_text())
    assert report["sizes"]["dev"] == {"positives": 0, "negatives": 0}
    (warning,) = report["warnings"]
    assert warning.startswith("warning: no positive pairs in dev: a strict split keeps a pair only when both")
    assert "use --split random" in warning and warning in err.splitlines()
    with pytest.raises(SystemExit) as e:
        main([*args, "--out", str(tmp_path / "random"), "--split", "random"])  # what the warning suggests
    err = capsys.readouterr().err
    assert e.value.code in (0, None) and "warning" not in err, err
    assert json.loads((tmp_path / "random" / "report.json").read_text())["warnings"] == []
    assert empty_split_warning({"train": {"positives": 3}}, "random") == (
        "warning: no positive pairs in dev and test: give more pairs"
    )  # STRING reports list only the splits it wrote


def test_malformed_pair_files(tmp_path, data_dir):
    bad = write(tmp_path / "p.tsv", "id_a\tid_b\nP1\n")
    with pytest.raises(InputError, match=r"p.tsv line 2: expected 2 fields, found 1"):
        list(read_id_pairs(bad, data_dir / "ppi_sequences.fasta"))
    table = write(tmp_path / "t.tsv", "id_a\tid_b\tseq_a\tseq_b\tlabel\nA\tB\tMKT\tMKL\t2\n")
    with pytest.raises(InputError, match=r"t.tsv line 2 \(record A\|B\): label must be 0 or 1"):
        list(read_pairs(table))


def test_builtin_pair_set_is_shipped_and_strict():
    path = builtin_pairs()
    assert path.is_file() and path.stat().st_size < 5_000_000
    stats = pairs_stats(path)
    assert all(v["positives"] > 100 and v["positives"] == v["negatives"] for v in stats["sizes"].values())
    pairs = list(read_pairs(path))
    proteins = {s: {i for p in pairs if p.split == s for i in (p.id_a, p.id_b)} for s in ("train", "dev", "test")}
    assert not proteins["train"] & proteins["test"]


def _links(data_dir):
    import gzip

    rows = [line.split() for line in gzip.open(data_dir / "string_links.txt.gz", "rt").read().splitlines()[1:]]
    return {(min(a, b), max(a, b)): int(s) for a, b, s in rows}


def test_string_builder_threshold_negatives_split_and_counts(tmp_path, data_dir):
    from protlm.pairs.string import build_string_pairs

    links = _links(data_dir)
    report = build_string_pairs(
        data_dir / "string_links.txt.gz", data_dir / "string_sequences.fa.gz", tmp_path, split="strict",
        tokenizer=None,
    )  # fmt: skip
    assert report["link_pairs"] == len(links)
    assert report["positives_at_threshold"] == sum(s >= 700 for s in links.values())
    pairs = list(read_pairs(tmp_path))
    pos = [p for p in pairs if p.label == 1]
    neg = [p for p in pairs if p.label == 0]
    assert all(links[(p.id_a, p.id_b)] >= 700 for p in pos)
    assert all((n.id_a, n.id_b) not in links and n.id_a != n.id_b for n in neg)  # never linked at any score
    assert all(n.id_a.split(".")[0] == n.id_b.split(".")[0] for n in neg)  # same organism
    kept = len(pos)
    assert (
        report["positives_at_threshold"]
        == kept + report["positives_across_splits"] + report["positives_missing_sequence"]
    )
    assert len(neg) == report["negatives"] and report["negatives"] + report["negatives_short"] == kept
    proteins = {s: {i for p in pairs if p.split == s for i in (p.id_a, p.id_b)} for s in ("train", "dev", "test")}
    assert not proteins["train"] & proteins["test"] and not proteins["train"] & proteins["dev"]
    # The SQL split is protlm.hashing's, protein for protein: `pairs build` would put each one on the same side.
    cuts = StringOptions().split_cuts()
    fractions = (cuts[0], cuts[1] - cuts[0], 1 - cuts[1])
    assert all(bucket(unit(i, 0), fractions) == s for s, ids in proteins.items() for i in ids)


def test_one_hash_in_python_and_duckdb():
    import duckdb

    keys = ["P12345", "9606.ENSP0000", "", "é|ü", "x" * 300, "a'b"]
    con = duckdb.connect()
    got = [con.execute(f"SELECT {sql_unit('$key', 'seed')}", {"key": k, "seed": "7"}).fetchall()[0][0] for k in keys]
    assert got == pytest.approx([unit(k, 7) for k in keys], abs=1e-15)
    assert all(0 <= u < 1 for u in got) and len(set(got)) == len(keys)


def test_string_builder_species_tokens_and_errors(tmp_path, data_dir):
    from protlm.pairs.string import build_string_pairs
    from protlm.tokenization import load_tokenizer

    tok = load_tokenizer(data_dir / "tokenizer_bpe300")
    report = build_string_pairs(
        data_dir / "string_links.txt.gz", data_dir / "string_sequences.fa.gz", tmp_path / "m", species="10090",
        split="random", tokenizer=tok, max_tokens=500,
    )  # fmt: skip
    pairs = list(read_pairs(tmp_path / "m"))
    assert pairs and all(p.id_a.startswith("10090.") and p.id_b.startswith("10090.") for p in pairs)
    assert sum(report["pairs_over_max_tokens"].values()) > 0  # long pairs counted, not silent
    for p in pairs:
        assert len(tok.hf(p.seq_a, p.seq_b)["input_ids"]) <= 500
    bad = tmp_path / "bad.txt"
    bad.write_text("protein1 protein2 combined_score\n9606.A 9606.B 800\n9606.A 9606.C high\n")
    with pytest.raises(InputError, match=r"bad.txt line 3: malformed links line"):
        build_string_pairs(bad, data_dir / "string_sequences.fa.gz", tmp_path / "b")
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("a b c\n1 2 3\n")
    with pytest.raises(InputError, match="not a STRING links file"):
        build_string_pairs(wrong, data_dir / "string_sequences.fa.gz", tmp_path / "w")


def test_peer_ppi_lmdb_reader_and_refuses_code(tmp_path, data_dir):
    import pickle

    import lmdb

    from protlm.pairs.lmdb_ppi import read_ppi_lmdb

    pairs = list(read_ppi_lmdb(data_dir / "human_ppi_small.lmdb", split="test"))
    assert [p.label for p in pairs] == [0, 1, 0, 1] and all(p.split == "test" and p.seq_a for p in pairs)

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    bad = tmp_path / "evil.lmdb"
    env = lmdb.open(str(bad), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"0", pickle.dumps(Evil()))
        txn.put(b"num_examples", pickle.dumps(1))
    env.close()
    with pytest.raises(
        InputError, match=r"evil.lmdb \(record 0\): unreadable record \(refusing to load (posix|os)\.system\)"
    ):
        list(read_ppi_lmdb(bad))
    assert not (tmp_path / "pwned").exists()
    partial = tmp_path / "partial.lmdb"
    env = lmdb.open(str(partial), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"0", pickle.dumps({"primary_1": "MKT"}))
        txn.put(b"num_examples", pickle.dumps(1))
    env.close()
    with pytest.raises(InputError, match=r"record lacks field\(s\) primary_2, interaction"):
        list(read_ppi_lmdb(partial))


def test_from_lmdb_cli(tmp_path, data_dir, capsys):
    with pytest.raises(SystemExit) as e:
        main(
            [
                "pairs",
                "from-lmdb",
                str(data_dir / "human_ppi_small.lmdb"),
                "--out",
                str(tmp_path / "p.parquet"),
                "--split",
                "dev",
            ]
        )
    assert e.value.code in (0, None)
    assert [p.split for p in read_pairs(tmp_path / "p.parquet")] == ["dev"] * 4


@pytest.mark.parametrize("out", ["existing/", "new_dir", "new_dir/", "p.csv", "p.tsv.gz", "p.parquet"])
def test_from_lmdb_out_is_what_pairs_stats_reads(tmp_path, data_dir, capsys, out):
    """`--out DIR/` wrote a Parquet file named DIR, and `.csv` a Parquet file: `pairs stats` refused both."""
    (tmp_path / "existing").mkdir()
    with pytest.raises(SystemExit) as e:
        main(["pairs", "from-lmdb", str(data_dir / "human_ppi_small.lmdb"), "--out", f"{tmp_path}/{out}"])
    assert e.value.code in (0, None)
    written = capsys.readouterr().out.strip().rsplit(" written to ", 1)[1]
    in_dir = "." not in out
    assert written == str(tmp_path / out.rstrip("/") / "pairs.parquet" if in_dir else tmp_path / out)
    if out.endswith(".csv"):
        assert Path(written).read_text().startswith("id_a,id_b,seq_a,seq_b,label,split\n")
    with pytest.raises(SystemExit) as e:
        main(["pairs", "stats", f"{tmp_path}/{out}"])  # the directory itself, as `pairs build` output
    assert e.value.code in (0, None)
    assert json.loads(capsys.readouterr().out)["pairs"] == 4


def test_from_lmdb_out_of_no_known_format_is_refused_before_reading(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["pairs", "from-lmdb", str(tmp_path / "missing.lmdb"), "--out", str(tmp_path / "pairs.dat")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "pairs.dat: unknown pair table format; name a .parquet, .tsv or .csv file" in err
    assert list(tmp_path.iterdir()) == []


def test_string_builder_groups_keep_clusters_on_one_side(tmp_path, data_dir):
    import gzip

    from protlm.pairs.string import build_string_pairs

    ids = sorted(
        {line.split()[0] for line in gzip.open(data_dir / "string_links.txt.gz", "rt").read().splitlines()[1:]}
    )
    human = [i for i in ids if i.startswith("9606.")]
    clusters = {pid: human[k // 5 * 5] for k, pid in enumerate(human)}  # clusters of 5 proteins
    groups = tmp_path / "clusters.tsv"
    groups.write_text("".join(f"{rep}\t{pid}\n" for pid, rep in clusters.items()))
    build_string_pairs(data_dir / "string_links.txt.gz", data_dir / "string_sequences.fa.gz", tmp_path / "o",
                       species="9606", groups=groups, seed=3)  # fmt: skip
    side: dict[str, set[str]] = {}
    for p in read_pairs(tmp_path / "o"):
        for pid in (p.id_a, p.id_b):
            side.setdefault(clusters[pid], set()).add(p.split)
    assert side and all(len(s) == 1 for s in side.values())


def test_string_detailed_layout(tmp_path, data_dir):
    import gzip

    from protlm.pairs.string import build_string_pairs

    rows = gzip.open(data_dir / "string_links.txt.gz", "rt").read().splitlines()[1:]
    detailed = tmp_path / "protein.physical.links.detailed.v12.0.txt"
    detailed.write_text(
        "protein1 protein2 experimental database textmining combined_score\n"
        + "".join(f"{a} {b} 0 0 {s} {s}\n" for a, b, s in (r.split() for r in rows))
    )
    r1 = build_string_pairs(detailed, data_dir / "string_sequences.fa.gz", tmp_path / "d")
    r2 = build_string_pairs(data_dir / "string_links.txt.gz", data_dir / "string_sequences.fa.gz", tmp_path / "p")
    assert r1["positives_at_threshold"] == r2["positives_at_threshold"] and r1["sizes"] == r2["sizes"]
