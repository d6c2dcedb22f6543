"""Longformer: conversion from RoBERTa, pre-training on a 2,048-token pair, fine-tuning, prediction, embedding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForMaskedLM

import protlm
from conftest import DATA, run_cli
from protlm.io import iter_fasta
from protlm.models.longformer import convert_roberta_to_longformer, encoder_kwargs

run = run_cli


@pytest.fixture(scope="module")
def roberta(micro_model):
    return micro_model


@pytest.fixture(scope="module")
def longformer(roberta, tmp_path_factory):
    return convert_roberta_to_longformer(roberta, tmp_path_factory.mktemp("lf") / "model", max_length=2048, window=64)


def test_conversion_preserves_outputs_when_the_window_covers_the_input(roberta, tmp_path):
    lf_dir = convert_roberta_to_longformer(roberta, tmp_path / "lf", max_length=512, window=256)
    rb = AutoModelForMaskedLM.from_pretrained(roberta, use_safetensors=True).eval()
    lf = AutoModelForMaskedLM.from_pretrained(lf_dir, use_safetensors=True).eval()  # plain HF loading
    assert type(lf).__name__ == "LongformerForMaskedLM" and lf.config.max_position_embeddings == 514
    ids = torch.tensor([[0, *range(5, 125), 2], [0, *range(7, 67), 2, *[1] * 60]])
    mask = (ids != 1).long()
    with torch.no_grad():
        a = rb(input_ids=ids, attention_mask=mask).logits
        b = lf(input_ids=ids, attention_mask=mask, **encoder_kwargs(lf.config, ids)).logits
    real = mask.bool()
    torch.testing.assert_close(b[real], a[real], atol=1e-4, rtol=1e-4)
    # positions past the trained 128 are tiled copies of the trained ones
    pos_rb = rb.roberta.embeddings.position_embeddings.weight
    pos_lf = lf.longformer.embeddings.position_embeddings.weight
    torch.testing.assert_close(pos_lf[2 + 128 : 2 + 256], pos_rb[2:130])


def test_convert_cli_and_errors(roberta, tmp_path, capsys):
    code, out, err = run(["longformer", "convert", "--from", str(roberta), "--out", str(tmp_path / "lf"),
                          "--max-length", "1024", "--window", "33"], capsys)  # fmt: skip
    assert code == 2 and "--window must be a positive even number" in err
    code, out, err = run(["longformer", "convert", "--from", str(tmp_path), "--out", str(tmp_path / "lf")], capsys)
    assert code == 2 and "not a model directory" in err


def test_pretrain_a_2048_token_pair_one_step(longformer, tmp_path):
    from protlm.train.config import PretrainConfig
    from protlm.train.pretrain import pretrain

    seqs = [r.seq for r in iter_fasta(DATA / "swissprot_50.fasta")]
    a, b = "".join(seqs[:8])[:1740], "".join(seqs[8:16])[:1740]
    tok = protlm.load(longformer).tokenizer
    n = len(tok.hf(a, b)["input_ids"])
    assert 1500 < n <= 2048  # one pair, far beyond RoBERTa's 128 positions, within the Longformer's 2,048
    table = tmp_path / "pairs.tsv"
    table.write_text(f"id_a\tid_b\tseq_a\tseq_b\tlabel\tsplit\nA\tB\t{a}\t{b}\t1\ttrain\n")
    cfg = PretrainConfig(out=str(tmp_path / "run"), tokenizer=str(longformer), model=str(longformer), corpus=None,
                         pairs=str(table), mix={"singles": 0, "binding": 1, "nonbinding": 0}, max_steps=1,
                         tokens_per_batch=4096, warmup_steps=0, cache_dir=str(tmp_path / "cache"))  # fmt: skip
    cfg.validate()
    state = pretrain(cfg, log=lambda m: None)
    assert state.step == 1 and state.tokens >= 1500
    assert (tmp_path / "run" / "checkpoints" / "step-00000001" / "model.safetensors").is_file()
    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "run" / "model", use_safetensors=True)
    assert type(model).__name__ == "LongformerForMaskedLM"


def test_longformer_finetune_predict_and_embed(longformer, tmp_path, capsys):
    out = tmp_path / "ss3"
    code, _, err = run(["finetune", "--task", "ss3", "--data", str(DATA / "tasks" / "ss_dssp_small.tsv"), "--model",
                        str(longformer), "--out", str(out), "--max-steps", "1",
                        "--cache-dir", str(tmp_path / "cache")], capsys)  # fmt: skip
    assert code in (0, None), err
    model_dir = out / "seed-0" / "model"
    lm = protlm.load(model_dir)
    assert type(lm.task_model).__name__ == "LongformerTaskModel"
    seqs = {r.id: r.seq for r in iter_fasta(DATA / "swissprot_50.fasta")}
    long_id = max(seqs, key=lambda k: len(seqs[k]))
    (pred,) = lm.predict({long_id: seqs[long_id]})
    assert len(pred.states) == len(seqs[long_id])
    code, _, err = run(["predict", str(DATA / "swissprot_50.fasta"), "--model", str(model_dir), "--out",
                        str(tmp_path / "p.tsv")], capsys)  # fmt: skip
    assert code in (0, None), err
    assert len(pd.read_csv(tmp_path / "p.tsv", sep="\t")) == 50
    vec = protlm.load(longformer).embed({long_id: seqs[long_id]}, pool=("residue", "mean"))[long_id]
    assert vec["residue"].shape == (len(seqs[long_id]), 32) and np.isfinite(vec["mean"]).all()


def test_assemblies_in_pretraining_and_embedding(roberta, tmp_path, capsys):
    from protlm.errors import InputError
    from protlm.pairs.assemblies import read_assemblies
    from protlm.train.config import PretrainConfig
    from protlm.train.pretrain import pretrain

    seqs = [r.seq for r in iter_fasta(DATA / "swissprot_50.fasta")]
    fasta = tmp_path / "complexes.fasta"
    fasta.write_text(f">c1\n{seqs[0][:40]}:{seqs[1][:30]}:{seqs[2][:20]}\n>c2\n{seqs[3][:25]}:{seqs[4][:35]}\n")
    got = list(read_assemblies(fasta))
    assert [a.member_ids for a in got] == [("c1:1", "c1:2", "c1:3"), ("c2:1", "c2:2")]
    # tables name members; a member without a sequence is an error with file and line
    (tmp_path / "members.tsv").write_text("id\tmembers\nx\tA0A183;A0A1F4;NOPE\n")
    with pytest.raises(InputError, match=r"members.tsv line 2 \(record x\): protein 'NOPE' is not in"):
        list(read_assemblies(tmp_path / "members.tsv", DATA / "swissprot_50.fasta"))
    bad = tmp_path / "bad.fasta"
    bad.write_text(">c1\nMKV::MSQ\n")
    with pytest.raises(InputError, match=r"line 1 \(record c1\): chain 2 is empty"):
        list(read_assemblies(bad))
    cfg = PretrainConfig(out=str(tmp_path / "run"), tokenizer=str(roberta), model=str(roberta), corpus=None,
                         assemblies=str(fasta), max_steps=2, tokens_per_batch=1024, warmup_steps=0,
                         cache_dir=str(tmp_path / "cache"))  # fmt: skip
    cfg.validate()
    state = pretrain(cfg, log=lambda m: None)
    assert state.step == 2
    # embedding an assembly: one residue vector per residue of every chain, in order
    code, out, err = run(["embed", str(fasta), "--model", str(roberta), "--out", str(tmp_path / "e.npz"),
                          "--pool", "residue"], capsys)  # fmt: skip
    assert code in (0, None), err
    z = np.load(tmp_path / "e.npz")
    assert z["c1"].shape == (90, 32) and z["c2"].shape == (60, 32)


def test_auto_picks_dense_attention_where_it_is_exact(roberta, tmp_path, capsys):
    code, out, err = run(["longformer", "convert", "--from", str(roberta), "--out", str(tmp_path / "auto"),
                          "--max-length", "512", "--window", "1024", "--attention", "auto"], capsys)  # fmt: skip
    assert code in (0, None), err
    assert out.startswith("dense model (512 tokens)")
    rb = AutoModelForMaskedLM.from_pretrained(roberta, use_safetensors=True).eval()
    dense = AutoModelForMaskedLM.from_pretrained(tmp_path / "auto", use_safetensors=True).eval()
    assert type(dense).__name__ == "RobertaForMaskedLM" and dense.config.max_position_embeddings == 514
    ids = torch.tensor([[0, *range(5, 105), 2]])
    with torch.no_grad():
        torch.testing.assert_close(dense(input_ids=ids).logits, rb(input_ids=ids).logits)
    code, out, _ = run(["longformer", "convert", "--from", str(roberta), "--out", str(tmp_path / "lf"),
                        "--max-length", "512", "--window", "256", "--attention", "auto"], capsys)  # fmt: skip
    assert out.startswith("longformer model (512 tokens, window 256)")
