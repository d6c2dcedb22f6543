"""Locks on run directories, concurrent store fills, killed commands: never a stuck run, a clash or a
partial output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, run_cli

TOK = DATA / "tokenizer_bpe300"
MLM = DATA / "protlm_0.1" / "mlm"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PROTLM_PROGRESS_EVERY": "0.05"}


def protlm(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "protlm", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, **kw)  # fmt: skip


def hold_lock(directory: Path, what: str) -> subprocess.Popen:
    """A process holding `directory`'s run lock until killed (what a running `pretrain` holds)."""
    code = ("import sys, time\nfrom protlm.io.lock import run_lock\n"
            f"with run_lock({str(directory)!r}, {what!r}):\n    print('held', flush=True)\n    time.sleep(600)\n")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline().strip() == "held"
    return proc


PRETRAIN = ["pretrain", "--tokenizer", TOK, "--model", DATA / "micro.yaml", "--corpus", DATA / "swissprot_50.fasta",
            "--max-steps", 1, "--tokens-per-batch", 512, "--max-tokens", 64, "--precision", "fp32"]  # fmt: skip
FINETUNE = ["finetune", "--task", "localization", "--data", DATA / "tasks" / "deeploc_small.fasta", "--model", MLM,
            "--max-steps", 1]  # fmt: skip


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_second_run_on_one_out_refuses_and_a_killed_run_leaves_no_stuck_lock(command, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*(PRETRAIN if command == "pretrain" else FINETUNE), "--out", out, "--cache-dir", tmp_path / "cache"]
    holder = hold_lock(out, command)
    try:
        code, _, err = run_cli([str(a) for a in argv], capsys)
        assert code == 2, err
        assert f"protlm: error: {out}: in use by another protlm run ({command}, pid {holder.pid} on " in err
        assert len(err.strip().splitlines()) == 1 and not (out / "model").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: the kernel drops the lock
        holder.wait()
    code, _, err = run_cli([str(a) for a in argv], capsys)
    assert code in (0, None), err


def test_two_processes_filling_one_store_both_succeed_with_one_result(tmp_path):
    """`corpus prepare` twice at once into one --out; `pairs prepare` too; and two pre-training runs sharing one
    cache: all succeed and the stores equal a lone run's."""
    corpus = DATA / "swissprot_50.fasta"
    prep = ["corpus", "prepare", corpus, "--tokenizer", TOK, "--shard-size", 7]
    pairs = ["pairs", "prepare", DATA / "pairs_small.tsv", "--tokenizer", TOK]
    runs = [protlm(*prep, "--out", tmp_path / "s"), protlm(*prep, "--out", tmp_path / "s"),
            protlm(*pairs, "--out", tmp_path / "p"), protlm(*pairs, "--out", tmp_path / "p"),
            *(protlm(*PRETRAIN, "--pairs", DATA / "pairs_small.tsv", "--out", tmp_path / f"r{k}",
                     "--cache-dir", tmp_path / "cache") for k in range(2))]  # fmt: skip
    for proc in runs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    lone = protlm(*prep, "--out", tmp_path / "lone")
    assert lone.wait(timeout=300) == 0
    for name in ("lengths.npy", "starts.npy", "holdout.npy", "duplicates.npy"):
        assert np.array_equal(np.load(tmp_path / "s" / name), np.load(tmp_path / "lone" / name)), name
    a, b = (json.loads((tmp_path / d / "store.json").read_text()) for d in ("s", "lone"))
    assert a["tokens"] == b["tokens"] and a["skip_report"] == b["skip_report"]
    assert len(list((tmp_path / "cache").glob("store-*"))) == 1 and len(list((tmp_path / "cache").glob("pairs-*"))) == 1
    assert not list(tmp_path.rglob("*.tmp-*")), "a staging directory or temporary file was left behind"


def big_fasta(path: Path, n: int, length: int = 400) -> Path:
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(f">S{i}\n{letters[rng.integers(0, 20, length)].tobytes().decode()}\n")
    return path


def kill_mid_write(argv: list, out: Path, delay: float) -> bool:
    """Start `protlm ARGV`, SIGKILL it `delay` s after its temporary output appears; True if it was killed then."""
    proc = protlm(*argv)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if list(out.parent.glob(f".{out.name}.tmp-*")):
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    proc.wait()
    return False


def test_killed_embed_leaves_no_partial_output(tmp_path):
    """SIGKILL while the output is being written, for each format: nothing under the final name; a rerun finishes.
    (bench/kill_outputs.py repeats this at many kill times, for more commands.)"""
    from concurrent.futures import ThreadPoolExecutor

    fasta = big_fasta(tmp_path / "in.fa", n=2500)  # Parquet writes its first row group at 1,024 rows
    outs = [tmp_path / f"e{suffix}" for suffix in (".parquet", ".npz", ".h5")]
    with ThreadPoolExecutor(len(outs)) as pool:  # the three at once: start-up (imports) dominates
        killed = list(pool.map(lambda out: kill_mid_write(["embed", fasta, "--model", MLM, "--out", out,
                                                           "--precision", "fp32"], out, 0.05), outs))  # fmt: skip
    assert all(killed)
    assert not [out.name for out in outs if out.exists()], "a killed embed left a file under the final name"
    out = outs[0]
    proc = protlm("embed", DATA / "swissprot_50.fasta", "--model", MLM, "--out", out, "--precision", "fp32")
    assert proc.wait(timeout=300) == 0 and out.is_file()  # a killed run's leftovers do not stand in the way


def test_attention_export_refuses_an_input_longer_than_the_model_in_one_line(tmp_path, capsys):
    """Maps are L x L per head and not windowed: a clear refusal naming file, record and limit, no output."""
    fasta = tmp_path / "in.fa"
    fasta.write_text(">short\nMKTAYIAKQR\n>long\n" + "MKTAYIAKQR" * 300 + "\n")
    out = tmp_path / "a.npz"
    code, _, err = run_cli(
        ["attention", "export", "--fasta", str(fasta), "--model", str(MLM), "--out", str(out)], capsys
    )
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"protlm: error: {fasta} (record long): ")
    assert "tokens, the model takes 128; attention maps are not windowed" in err and not out.exists()
