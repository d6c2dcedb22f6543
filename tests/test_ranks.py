"""Inference across torchrun's processes (protlm.ranks): `torchrun -m protlm embed / predict` on 2 CPU ranks
(gloo) writes the output one process writes, in input order, and nothing when a rank fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import DATA, run_cli
from protlm.errors import ProtlmError
from protlm.ranks import Ranks, interleave

TASKS = DATA / "tasks"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def torchrun(args: list[str], n: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", "-m", "protlm"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=ENV, timeout=300)


def test_mine_and_interleave_give_input_order_back():
    items = list(range(11))
    shares = [list(Ranks(r, 3).mine(items)) for r in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert list(interleave([iter(s) for s in shares])) == items
    with pytest.raises(ProtlmError, match="do not add up"):
        list(interleave([iter([0, 2]), iter([1, 3, 5])]))


def test_ranks_from_env_checks_torchrun_variables(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ProtlmError, match="not within WORLD_SIZE"):
        Ranks.from_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ProtlmError, match="integers"):
        Ranks.from_env()


def test_torchrun_embed_and_predict_equal_one_process(micro_model, tmp_path, capsys):
    fasta = DATA / "swissprot_50.fasta"
    one, two = tmp_path / "one.parquet", tmp_path / "two.parquet"
    args = ["--model", str(micro_model), "--pool", "mean", "--pool", "residue", "--device", "cpu"]
    code, _, err = run_cli(["embed", str(fasta), "--out", str(one), *args], capsys)
    assert code in (0, None), err
    done = torchrun(["embed", str(fasta), "--out", str(two), *args])
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("50 embeddings") == 1  # rank 0 reports, once
    a, b = pq.read_table(one).to_pydict(), pq.read_table(two).to_pydict()
    assert a["id"] == b["id"] and a["length"] == b["length"]
    for key in ("mean", "residue"):
        for x, y in zip(a[key], b[key], strict=True):
            np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.parquet", "two.parquet"]  # no spool left

    data = str(TASKS / "deeploc_small.fasta")
    ft = tmp_path / "ft"
    code, _, err = run_cli(["finetune", "--task", "localization", "--data", data, "--model", str(micro_model),
                            "--out", str(ft), "--max-steps", "2", "--cache-dir", str(tmp_path / "cache")], capsys)  # fmt: skip
    assert code in (0, None), err
    model = str(ft / "seed-0" / "model")
    code, _, err = run_cli(["predict", data, "--model", model, "--out", str(tmp_path / "p1.tsv")], capsys)
    assert code in (0, None), err
    done = torchrun(["predict", data, "--model", model, "--out", str(tmp_path / "p2.tsv"), "--device", "cpu"])
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p2.tsv").read_text() == (tmp_path / "p1.tsv").read_text()


def test_torchrun_embed_failure_leaves_nothing(micro_model, tmp_path):
    bad = tmp_path / "bad.fasta"
    bad.write_text(">a\nMKTAYIAKQR\n>b\nMKT1AYIAK\n")  # record b: a digit, refused with --strict
    out = tmp_path / "o.npz"
    done = torchrun(["embed", str(bad), "--out", str(out), "--model", str(micro_model), "--strict", "--device", "cpu"])
    # every rank reads every record, so both name it in one line (the traceback after is torchrun's own report)
    assert done.returncode != 0 and done.stderr.count("protlm: error: " + str(bad) + " line 3 (record b)") == 2
    assert "protlm/" not in done.stderr.replace(str(bad), "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.fasta"]
    done = torchrun(["embed", str(bad), "--out", str(tmp_path / "o.txt"), "--model", str(micro_model)])
    assert done.returncode != 0 and "unknown output format" in done.stderr
    assert not list(Path(tmp_path).glob(".o.*"))
