"""The corpus store: identical whatever the worker count, resumable after kill -9, shardable across
machines, memory-mapped by pre-training, and loud about anything damaged or mismatched."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, run_cli, write
from protlm.errors import InputError, ProtlmError
from protlm.hashing import held_out
from protlm.io import ResiduePolicy, iter_fasta
from protlm.store import Inputs, TokenStore, index_store, prepare_store
from protlm.tokenization import load_tokenizer
from protlm.tokenized import tokenize

TOK = DATA / "tokenizer_bpe300"


def digest(store: Path) -> str:
    """Every file of a store except the fingerprint (which names the input paths)."""
    h = hashlib.sha256()
    for f in sorted(
        p for p in store.rglob("*") if p.is_file() and p.name != "prepare.json" and p.parent.name != "parts"
    ):
        h.update(str(f.relative_to(store)).encode())
        h.update(
            f.read_bytes() if f.name != "store.json" else json.dumps(json.loads(f.read_text())["records"]).encode()
        )
    return h.hexdigest()


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Swiss-Prot's 50 records plus an empty one, a duplicate in the same chunk of 7 (of record 1) and one
    in a later chunk (of record 3)."""
    recs = (DATA / "swissprot_50.fasta").read_text().split(">")[1:]
    recs.insert(2, recs[1])
    return write(tmp_path / "c.fasta", ">" + ">".join(recs) + ">EMPTY\n\n>" + recs[4])


def test_store_equals_direct_tokenization_and_counts_every_record(tmp_path, corpus):
    prepare_store(Inputs.expand([str(corpus)]), TOK, tmp_path / "s", ResiduePolicy(max_length=800), shard_size=7)
    store = TokenStore(tmp_path / "s")
    rep = store.meta["skip_report"]
    assert rep["read"] == 53 == rep["used"] + sum(rep["skipped"].values())
    assert rep["skipped"]["duplicate id"] == 2 and rep["skipped"]["empty sequence"] == 1
    long = rep["skipped"].get("longer than 800 residues", 0)
    kept = [r for r in iter_fasta(DATA / "swissprot_50.fasta") if len(r.seq) <= 800]
    assert len(kept) == 50 - long and len(store.duplicates) == 1  # the later-chunk duplicate, found by the index
    direct = tokenize(load_tokenizer(TOK), [r.id for r in kept], [r.seq for r in kept])
    usable = np.flatnonzero(store.usable())
    assert [store.ids[int(i)] for i in usable] == [r.id for r in kept]
    for k, i in enumerate(usable):
        assert np.array_equal(store.get(int(i)), direct.get(k))
    assert np.array_equal(store.lengths[usable], direct.lengths)
    held = store.heldout(0.3)
    assert [bool(held[i]) for i in usable] == [held_out(r.id, 0.3) for r in kept]


def test_store_is_identical_for_any_worker_count(tmp_path):
    one = prepare_store(Inputs.expand(["scl2205:heldout"]), TOK, tmp_path / "w1", workers=1, shard_size=400)
    two = prepare_store(Inputs.expand(["scl2205:heldout"]), TOK, tmp_path / "w2", workers=2, shard_size=400)
    assert one["chunks"] == two["chunks"] > 3
    assert digest(tmp_path / "w1") == digest(tmp_path / "w2")


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_prepare_resumes_after_kill_9(tmp_path):
    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "protlm", "corpus", "prepare", "scl2205:train", "--tokenizer", str(TOK), "--out",
           str(out), "--shard-size", "300", "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "shards").glob("0*"))) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    orphans = [p for p in Path("/proc").glob("[0-9]*") if str(out).encode() in _cmdline(p)]
    assert not orphans  # workers die with the killed process (PR_SET_PDEATHSIG)
    done = sorted(p.name for p in (out / "shards").glob("0*"))
    assert len(done) >= 3 and not (out / "store.json").exists()
    (out / "shards" / ".99999.tmp-1").mkdir()  # a half-written shard never counts
    resumed = subprocess.run(cmd, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    kept = int(resumed.stderr.split(" kept from")[0].split(",")[-1].split()[0])
    assert kept >= len(done) - 2  # shards still being written at the kill are redone, the rest kept
    assert not list((out / "shards").glob(".*"))
    clean = tmp_path / "clean"
    prepare_store(Inputs.expand(["scl2205:train"]), TOK, clean, shard_size=300)
    assert digest(out) == digest(clean)


def test_parts_across_machines_then_index(tmp_path, capsys):
    inputs = Inputs.expand(["scl2205:heldout"])
    whole = tmp_path / "whole"
    prepare_store(inputs, TOK, whole, shard_size=500)
    parts = tmp_path / "multi"
    r0 = prepare_store(inputs, TOK, parts, shard=(0, 2), shard_size=500)
    assert not r0["indexed"] and r0["shards_written"] == (r0["chunks"] + 1) // 2
    with pytest.raises(ProtlmError, match="shards missing"):
        index_store(parts)
    prepare_store(inputs, TOK, parts, shard=(1, 2), shard_size=500)
    code, stdout, _ = run_cli(["corpus", "index", str(parts)], capsys)
    assert code in (0, None) and "proteins" in stdout
    assert digest(parts) == digest(whole)


def test_mismatched_or_damaged_stores_are_errors(tmp_path, capsys):
    out = tmp_path / "s"
    prepare_store(Inputs.expand([str(DATA / "swissprot_50.fasta")]), TOK, out, shard_size=20)
    other_tok = tmp_path / "tok2"
    shutil.copytree(TOK, other_tok)
    j = json.loads((other_tok / "tokenizer.json").read_text())
    j["model"]["vocab"]["ZZZ"] = len(j["model"]["vocab"]) + 10  # a different tokenizer
    (other_tok / "tokenizer.json").write_text(json.dumps(j))
    code, _, err = run_cli(["corpus", "prepare", str(DATA / "swissprot_50.fasta"), "--tokenizer", str(other_tok),
                            "--out", str(out), "--shard-size", "20"], capsys)  # fmt: skip
    assert code == 2 and "tokenizer_sha256" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["pretrain", "--corpus", str(out), "--tokenizer", str(other_tok), "--model",
                            str(DATA / "micro.yaml"), "--max-steps", "1", "--out", str(tmp_path / "r"),
                            "--cache-dir", str(tmp_path / "cache")], capsys)  # fmt: skip
    assert code == 2 and "another tokenizer" in err
    tokens = out / "shards" / "00001" / "tokens.npy"
    tokens.write_bytes(tokens.read_bytes()[:100])  # truncated shard
    store = TokenStore(out)
    with pytest.raises(InputError, match="00001"):
        store.get(int(store.starts[1]))
    (out / "lengths.npy").unlink()
    with pytest.raises(InputError, match="lengths.npy"):
        TokenStore(out)
    code, _, err = run_cli(["corpus", "info", str(tmp_path)], capsys)
    assert code == 2 and "not a finished corpus store" in err


def test_pretrain_reads_a_store_like_the_file_it_was_made_from(tmp_path, capsys):
    """`--corpus STORE` (any shard size) and `--corpus FILE` (prepared into the cache) train identically."""
    from test_pretrain import base_args

    store = tmp_path / "store"
    prepare_store(Inputs.expand([str(DATA / "swissprot_50.fasta")]), TOK, store, shard_size=13)
    losses = []
    for name, corpus in (("file", DATA / "swissprot_50.fasta"), ("store", store)):
        args = base_args(tmp_path / name, tmp_path / "cache", **{"--corpus": corpus, "--max-steps": 4})
        code, _, err = run_cli(["pretrain", *args], capsys)
        assert code in (0, None), err
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses.append([r["loss"] for r in rows if "loss" in r])
    assert losses[0] == losses[1] and len(losses[0]) == 4
    assert len(list((tmp_path / "cache").glob("store-*"))) == 1  # the file corpus went through a store too


def test_invalid_residue_is_one_line_and_no_store(tmp_path, capsys):
    bad = write(tmp_path / "bad.fasta", ">A\nMKV\n>B\nMKVL\n>C\nMK#V\n")
    code, _, err = run_cli(["corpus", "prepare", str(bad), "--tokenizer", str(TOK), "--out", str(tmp_path / "s"),
                            "--shard-size", "2", "--workers", "2"], capsys)  # fmt: skip
    assert code == 2
    assert err.strip().splitlines()[-1] == f"protlm: error: {bad} line 5 (record C): invalid residue '#' at position 3"
    assert not (tmp_path / "s" / "store.json").exists()


def test_inputs_in_any_format_and_globs_give_the_same_store(tmp_path):
    """The same records as FASTA.gz, as a Parquet + a TSV (a glob), and as one FASTA: identical stores."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    recs = list(iter_fasta(DATA / "swissprot_50.fasta"))
    one = write(tmp_path / "all.fasta", "".join(f">{r.id}\n{r.seq}\n" for r in recs))
    with gzip.open(tmp_path / "all.fasta.gz", "wt") as fh:
        fh.write(one.read_text())
    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(pa.table({"acc": [r.id for r in recs[:20]], "seq": [r.seq for r in recs[:20]]}), parts / "a.parquet")
    write(parts / "b.tsv", "acc\tseq\n" + "".join(f"{r.id}\t{r.seq}\n" for r in recs[20:]))
    stores = {}
    for name, inputs in {"fasta": Inputs.expand([str(one)]), "gz": Inputs.expand([str(tmp_path / "all.fasta.gz")]),
                         "tables": Inputs.expand([str(parts / "*")], id_col="acc", seq_col="seq")}.items():  # fmt: skip
        prepare_store(inputs, TOK, tmp_path / name, shard_size=16)
        arrays = sorted(f for f in (tmp_path / name).rglob("*.npy"))  # the .json files name their inputs
        stores[name] = hashlib.sha256(b"".join(f.read_bytes() for f in arrays)).hexdigest()
    assert len(Inputs.expand([str(parts / "*")]).specs) == 2
    assert stores["fasta"] == stores["gz"] == stores["tables"]
    with pytest.raises(InputError, match="no file matches"):
        Inputs.expand([str(tmp_path / "nothing*.fa")])


def test_empty_corpus_and_bad_out_are_one_line_errors(tmp_path, capsys):
    empty = write(tmp_path / "empty.fasta", "")
    code, _, err = run_cli(["corpus", "prepare", str(empty), "--tokenizer", str(TOK), "--out", str(tmp_path / "s")],
                           capsys)  # fmt: skip
    assert code == 2 and f"{empty}: no records" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["corpus", "prepare", str(DATA / "swissprot_50.fasta"), "--tokenizer", str(TOK),
                            "--out", str(empty)], capsys)  # fmt: skip
    assert code == 2 and "not a directory" in err
