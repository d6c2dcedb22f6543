"""`protlm embed` / `predict` / `fill` and the Python API on a micro model."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

import protlm
from conftest import DATA, run_cli, write
from protlm.io import iter_fasta

FASTA = DATA / "swissprot_50.fasta"


run = run_cli


@pytest.fixture(scope="module")
def pretrained(micro_model):
    return micro_model


@pytest.fixture(scope="module")
def seqs() -> dict[str, str]:
    return {r.id: r.seq for r in iter_fasta(FASTA)}


@pytest.mark.parametrize("suffix", [".parquet", ".npz", ".h5"])
def test_embed_formats_read_back(pretrained, seqs, tmp_path, capsys, suffix):
    out = tmp_path / f"e{suffix}"
    code, stdout, err = run(["embed", str(FASTA), "--model", str(pretrained), "--out", str(out), "--pool", "mean",
                             "--pool", "residue", "--pool", "cls", "--layers", "-1,0"], capsys)  # fmt: skip
    assert code in (0, None), err
    assert "50 records read, 50 used, 0 skipped" in err and "50 embeddings" in stdout
    ids = list(seqs)
    if suffix == ".parquet":
        df = pd.read_parquet(out)
        assert df["id"].tolist() == ids  # input order
        assert len(df["mean.-1"][0]) == 32 and len(df["cls.0"][0]) == 32
        residue = np.stack(df["residue.-1"][3])
        assert residue.shape == (len(seqs[ids[3]]), 32) and df["length"][3] == len(seqs[ids[3]])
    elif suffix == ".npz":
        z = np.load(out)
        assert z[f"mean.-1/{ids[0]}"].shape == (32,)
        for pid in ids:  # every residue gets a vector under BPE tokens
            assert z[f"residue.0/{pid}"].shape == (len(seqs[pid]), 32)
    else:
        with h5py.File(out) as f:
            assert set(f) == {"mean.-1", "residue.-1", "cls.-1", "mean.0", "residue.0", "cls.0"}
            assert f["residue.-1"][ids[5]].shape == (len(seqs[ids[5]]), 32)
    from protlm.io.embeddings import file_meta

    meta = file_meta(out)  # every format records how it was computed
    assert meta["precision"] == "fp32" and meta["device"] == "cpu" and meta["model"] == str(pretrained)
    assert "mean.-1" in meta["outputs"] and "fp32 on cpu" in stdout


def test_inference_is_fp32_on_the_cpu_unless_bf16_is_asked_for(pretrained, seqs, tmp_path, capsys, monkeypatch):
    """`--precision auto` must not depend on the CPU's instruction set: even where bf16 is measured faster
    (faked here) embeddings and variant scores are fp32; bf16 when asked for, and the file says so."""
    import protlm.device as device

    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(device, "cpu_bf16_is_faster", lambda: True)
    cpu = torch.device("cpu")
    assert device.autocast_dtype("auto", cpu) == torch.bfloat16  # training's auto: measured
    assert device.inference_dtype("auto", cpu) is None and device.inference_dtype("bf16", cpu) == torch.bfloat16
    from protlm.io.embeddings import file_meta

    for precision in ("auto", "bf16"):
        out = tmp_path / f"{precision}.npz"
        code, stdout, err = run(["embed", str(FASTA), "--model", str(pretrained), "--out", str(out),
                                 "--precision", precision], capsys)  # fmt: skip
        want = "bf16" if precision == "bf16" else "fp32"
        assert code in (0, None) and file_meta(out)["precision"] == want and f"{want} on cpu" in stdout, err
    lm = protlm.load(pretrained)
    assert lm.embedder().precision == "fp32" and lm.embedder(precision="bf16").precision == "bf16"


def test_single_output_h5_has_one_dataset_per_id(pretrained, seqs, tmp_path, capsys):
    out = tmp_path / "e.h5"
    assert run(["embed", str(FASTA), "--model", str(pretrained), "--out", str(out)], capsys)[0] in (0, None)
    with h5py.File(out) as f:
        assert sorted(f) == sorted(seqs) and f[next(iter(seqs))].shape == (32,)


def test_api_mean_is_residue_mean_and_batch_independent(pretrained, seqs):
    model = protlm.load(pretrained)
    some = dict(list(seqs.items())[:12])
    # fp32: `auto` takes bf16 on CPUs where it measures faster, and bf16 rounding is not the property tested here
    mixed = model.embed(some, pool=("mean", "residue", "cls"), tokens_per_batch=4096, precision="fp32")
    pid = list(some)[7]
    alone = model.embed({pid: some[pid]}, pool=("mean", "residue", "cls"), tokens_per_batch=64, precision="fp32")
    for key in ("mean", "residue", "cls"):
        np.testing.assert_allclose(alone[pid][key], mixed[pid][key], atol=1e-5)
    np.testing.assert_allclose(mixed[pid]["mean"], mixed[pid]["residue"].mean(0), atol=1e-5)


def test_long_protein_windows_are_stitched(pretrained, seqs):
    model = protlm.load(pretrained)
    pid, seq = max(seqs.items(), key=lambda kv: len(kv[1]))
    n_tokens = len(model.tokenizer.backend.encode(seq, add_special_tokens=False).ids)
    assert n_tokens > 128  # longer than the micro model's 128 positions: no error, no truncation
    out = model.embed({pid: seq}, pool="residue")[pid]["residue"]
    assert out.shape == (len(seq), 32)
    # with windows of 32 tokens that do not overlap, the first window's residues equal a direct encoding
    emb = model.embedder(pools=("residue",), max_tokens=34, stride=32, precision="fp32")  # direct is fp32
    (res,) = list(emb.embed(iter([protlm.api.SeqRecord(pid, seq)])))
    ids = model.tokenizer.backend.encode(seq, add_special_tokens=False).ids
    with torch.inference_mode():
        direct = model.encoder(input_ids=torch.tensor([[0, *ids[:32], 2]])).last_hidden_state[0, 1:33].numpy()
    lengths = emb.token_lengths[np.array(ids[:32])]
    np.testing.assert_allclose(res.vectors["residue"][: lengths.sum()], np.repeat(direct, lengths, axis=0), atol=1e-5)


def test_embed_bad_input_is_one_line(pretrained, tmp_path):
    bad = write(tmp_path / "bad.fasta", ">P1\nMKV\n>P2\nMK#V\n")
    proc = subprocess.run([sys.executable, "-m", "protlm", "embed", str(bad), "--model", str(pretrained),
                           "--out", str(tmp_path / "o.npz")], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1]
        == f"protlm: error: {bad} line 3 (record P2): invalid residue '#' at position 3"
    )


def test_embed_unknown_format_and_pool(pretrained, tmp_path, capsys):
    code, _, err = run(["embed", str(FASTA), "--model", str(pretrained), "--out", str(tmp_path / "e.csv")], capsys)
    assert code == 2 and "unknown output format" in err
    code, _, err = run(["embed", str(FASTA), "--model", str(pretrained), "--out", str(tmp_path / "e.npz"),
                        "--pool", "max"], capsys)  # fmt: skip
    assert code == 2 and "--pool must be among mean, cls, residue" in err


def test_fill_with_the_real_mask_token(pretrained, capsys):
    code, out, err = run(["fill", "MKTAYIAK<mask>LLVA<mask>", "--model", str(pretrained), "--top-k", "3"], capsys)
    assert code in (0, None), err
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("mask 1: ") and len(lines[0].split()) == 2 + 2 * 3
    code, _, err = run(["fill", "MKTAYIAK[MASK]LLV", "--model", str(pretrained)], capsys)
    assert code == 2 and "no <mask> in the input" in err


def test_predict_sequence_residue_and_pair_tasks(pretrained, tmp_path, capsys):
    tasks = DATA / "tasks"
    cases = [
        ("localization", str(tasks / "deeploc_small.fasta"), FASTA),
        ("ss3", str(tasks / "ss_dssp_small.tsv"), FASTA),
        ("ppi", str(DATA / "pairs_small.tsv"), DATA / "pairs_small.tsv"),
    ]
    for task, data, inputs in cases:
        out = tmp_path / task
        code, _, err = run(["finetune", "--task", task, "--data", data, "--model", str(pretrained), "--out", str(out),
                            "--max-steps", "1", "--cache-dir", str(tmp_path / "cache")], capsys)  # fmt: skip
        assert code in (0, None), err
        pred = tmp_path / f"{task}.tsv"
        code, stdout, err = run(["predict", str(inputs), "--model", str(out / "seed-0" / "model"), "--out", str(pred)],
                                capsys)  # fmt: skip
        assert code in (0, None), err
        df = pd.read_csv(pred, sep="\t")
        if task == "ss3":
            assert list(df.columns) == ["id", "length", "predicted", "mean_probability"]
            assert (df["predicted"].str.len() == df["length"]).all() and set("".join(df["predicted"])) <= set("HEC")
        elif task == "ppi":
            assert df.shape == (40, 4) and df["id"][0] == "A0A335|A0A337"
        else:
            assert df.shape[0] == 50 and df.shape[1] == 2 + 10  # id, predicted, p_<10 DeepLoc classes>
            np.testing.assert_allclose(df.filter(like="p_").sum(axis=1), 1.0, atol=1e-3)


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".parquet"])
def test_hostile_ids_stay_inside_the_output_and_failures_leave_no_file(pretrained, tmp_path, capsys, suffix):
    from urllib.parse import unquote

    ids = ["sp/P1", "sp_P1", "../../x", "/etc/x", ".hidden"]
    fasta = write(tmp_path / "in.fasta", "".join(f">{i}\nMKTAYIAKQRQISFVK\n" for i in ids))
    out = tmp_path / f"e{suffix}"
    code, _, err = run(["embed", str(fasta), "--model", str(pretrained), "--out", str(out)], capsys)
    assert code in (0, None), err
    if suffix == ".npz":
        names = np.load(out).files
        assert sorted(unquote(n) for n in names) == sorted(ids)  # reversible names, none with a '/'
        assert not any("/" in n or n.startswith(".") for n in names)
    elif suffix == ".h5":
        with h5py.File(out) as f:
            assert sorted(f[k].attrs["id"] for k in f) == sorted(ids) and len(f) == len(ids)
    else:
        assert sorted(pd.read_parquet(out)["id"]) == sorted(ids)
    # a bad record part-way: exit 2, and neither the output nor a temporary file is left behind
    bad = write(tmp_path / "bad.fasta", ">a\nMKTAYIAK\n>b\nMKT*1AY\n")
    failed = tmp_path / f"f{suffix}"
    code, _, err = run(["embed", str(bad), "--model", str(pretrained), "--out", str(failed)], capsys)
    assert code == 2 and "bad.fasta" in err
    assert not failed.exists() and not list(tmp_path.glob(f".f{suffix}.tmp-*"))


def test_an_interrupted_embed_resumes_to_the_same_output(pretrained, tmp_path, capsys, monkeypatch):
    """Killed after three chunks, `embed --resume` keeps them, embeds the rest and writes exactly what an
    uninterrupted run writes; a rerun without --resume, other settings or another input are refused."""
    from protlm.embed import Embedder
    from protlm.io.partial import PartialOutput

    chunks = PartialOutput.chunks
    monkeypatch.setattr(PartialOutput, "chunks", lambda self, records, size: chunks(self, records, 8))
    args = ["embed", str(FASTA), "--model", str(pretrained), "--pool", "mean", "--pool", "residue"]
    ref, out = tmp_path / "ref.npz", tmp_path / "out.npz"
    assert run([*args, "--out", str(ref)], capsys)[0] in (0, None)
    assert not list(tmp_path.glob(".*partial"))
    embed, calls = Embedder.embed, []

    def interrupted(self, records):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        yield from embed(self, records)

    monkeypatch.setattr(Embedder, "embed", interrupted)
    code, _, err = run([*args, "--out", str(out)], capsys)
    partial = tmp_path / ".out.npz.partial"
    assert code == 130 and "--resume continues" in err and not out.exists()
    assert sorted(p.name for p in partial.glob("part-*.zip")) == [
        "part-000000.zip",
        "part-000001.zip",
        "part-000002.zip",
    ]
    monkeypatch.setattr(Embedder, "embed", embed)
    code, _, err = run([*args, "--out", str(out), "--resume", "--pool", "cls"], capsys)
    assert code == 2 and "was embedded with options" in err
    other = write(tmp_path / "other.fasta", "".join(f">X{i}\nMKTAYIAKQR\n" for i in range(30)))
    code, _, err = run(["embed", str(other), *args[2:], "--out", str(out), "--resume"], capsys)
    assert code == 2 and "embedded with input" in err
    code, stdout, err = run([*args, "--out", str(out), "--resume"], capsys)
    assert code in (0, None) and "resuming: 24 records already embedded" in err and "50 embeddings" in stdout
    a, b = np.load(ref), np.load(out)
    assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    assert not partial.exists()
    # without --resume, a run starts over, replacing an interrupted run's parts, and says so
    monkeypatch.setattr(Embedder, "embed", interrupted)
    calls.clear()
    assert run([*args, "--out", str(out.with_name("d.npz"))], capsys)[0] == 130
    monkeypatch.setattr(Embedder, "embed", embed)
    code, _, err = run([*args, "--out", str(out.with_name("d.npz"))], capsys)
    assert code in (0, None) and "starts over" in err and not (tmp_path / ".d.npz.partial").exists()
    # the same file name with other records: the records done no longer match the input's first records
    copy = write(tmp_path / "in.fasta", FASTA.read_text())
    monkeypatch.setattr(Embedder, "embed", interrupted)
    calls.clear()
    assert run(["embed", str(copy), *args[2:], "--out", str(out.with_name("c.npz"))], capsys)[0] == 130
    monkeypatch.setattr(Embedder, "embed", embed)
    copy.write_text("".join(FASTA.read_text().split(">", 2)[2:]).join([">", ""]))  # the first record gone
    code, _, err = run(["embed", str(copy), *args[2:], "--out", str(out.with_name("c.npz")), "--resume"], capsys)
    assert code == 2 and "the input changed" in err and (tmp_path / ".c.npz.partial").is_dir()  # kept: a mistake?


def test_progress_lines_give_the_share_done_and_an_eta_when_the_total_is_known(capsys):

    from protlm.progress import LogProgress, duration

    bar = LogProgress(total=400, unit="step", desc="pretrain", every=0.0)
    bar.start -= 10.0  # 100 steps in 10 s: 300 left at 10 step/s
    bar.update(100)
    line = capsys.readouterr().err.strip()
    assert line.startswith("pretrain: 100/400 step (25%, ") and "ETA 30s" in line, line
    open_ended = LogProgress(unit="records", every=0.0)
    open_ended.update(5)
    assert "ETA" not in capsys.readouterr().err
    assert [duration(s) for s in (42, 185, 7620)] == ["42s", "3m05s", "2h07m"]
