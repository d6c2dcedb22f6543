"""Any backbone: ESM-2, ProtBERT and paccmann-style RoBERTa checkpoints (tiny, random, real vocabularies)
through protlm's tokenization, masking, embeddings and every command, checked against plain HF."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import protlm
from backbones import build_esm, build_protbert, build_roberta_bpe, hub_cache
from conftest import DATA, run_cli
from protlm.batching import MaskingVocab, mask_for_mlm, pad_batch
from protlm.io import iter_fasta
from protlm.tokenization import load_tokenizer

SEQS = [r.seq for r in iter_fasta(DATA / "swissprot_50.fasta")]
KINDS = ("esm", "protbert", "roberta")
MAX_TOKENS = 300  # room for chains A + B of 2HHB (141 + 146 residues); longer inputs are windowed


@pytest.fixture(scope="session")
def backbones(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("backbones")
    return {
        "esm": build_esm(root / "esm", MAX_TOKENS),
        "protbert": build_protbert(root / "protbert", MAX_TOKENS),
        "roberta": build_roberta_bpe(root / "roberta", SEQS, MAX_TOKENS),
    }


def hf_text(kind: str, seq: str) -> str:
    """What the backbone's own tokenizer expects: ProtBERT separates residues by spaces."""
    return " ".join(seq) if kind == "protbert" else seq


@pytest.mark.parametrize("kind", KINDS)
def test_tokenization_and_templates_equal_the_hf_tokenizer(backbones, kind):
    tok = load_tokenizer(backbones[kind])
    for a, b in zip(SEQS[:10], SEQS[10:20], strict=True):
        a, b = a[:40], b[:30]
        assert tok.assemble([tok.encode(a)]).tolist() == tok.hf(hf_text(kind, a))["input_ids"]
        pair = tok.assemble([tok.encode(a), tok.encode(b)]).tolist()
        assert pair == tok.hf(hf_text(kind, a), hf_text(kind, b))["input_ids"]
    first, between = {"esm": ("<cls>", ["<eos>"]), "protbert": ("[CLS]", ["[SEP]"]),
                      "roberta": ("<s>", ["</s>", "</s>"])}[kind]  # fmt: skip
    assert tok.hf.convert_ids_to_tokens(list(tok.template.prefix)) == [first]
    assert tok.hf.convert_ids_to_tokens(list(tok.template.between)) == between
    # every residue is covered exactly once (per-residue tasks and embeddings rely on it)
    for seq in SEQS[:10]:
        assert int(tok.residue_lengths[tok.encode(seq)].sum()) == len(seq)


@pytest.mark.parametrize("kind", KINDS)
def test_masking_never_touches_specials_or_pads(backbones, kind):
    tok = load_tokenizer(backbones[kind])
    seqs = [tok.assemble([tok.encode(a[:50]), tok.encode(b[:20])]) for a, b in zip(SEQS[:8], SEQS[8:16], strict=True)]
    ids, _ = pad_batch(seqs, tok.pad_token_id)
    masked, labels = mask_for_mlm(ids, MaskingVocab.of(tok), torch.Generator().manual_seed(0), 0.5)
    special = torch.isin(ids, torch.from_numpy(tok.special_ids))
    assert special.any() and not (labels[special] != -100).any()
    assert torch.equal(masked[special], ids[special])  # specials and pads never change
    changed = (masked != ids) & (masked != tok.mask_token_id)
    assert changed.any() and (torch.from_numpy(tok.residue_lengths)[masked[changed]] > 0).all()  # random = residues


@pytest.mark.parametrize("kind", KINDS)
def test_embed_equals_the_plain_hf_model(backbones, kind):
    from transformers import AutoModel

    path = backbones[kind]
    tok = load_tokenizer(path)
    hf_model = AutoModel.from_pretrained(path, add_pooling_layer=False, use_safetensors=True).eval()
    model = protlm.load(path)
    seqs = {f"s{i}": s[:50] for i, s in enumerate(SEQS[:6])}
    out = model.embed(seqs, pool=("residue", "cls"), precision="fp32")
    for rid, seq in seqs.items():
        enc = tok.hf(hf_text(kind, seq), return_tensors="pt")
        with torch.no_grad():
            states = hf_model(**enc).last_hidden_state[0].numpy()
        per_token = tok.residue_lengths[enc["input_ids"][0, 1:-1].numpy()]
        expected = np.repeat(states[1:-1], per_token, axis=0)  # a BPE token's state for each of its residues
        assert out[rid]["residue"].shape == (len(seq), 32)
        np.testing.assert_allclose(out[rid]["residue"], expected, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(out[rid]["cls"], states[0], atol=1e-5, rtol=1e-5)
    long = "".join(SEQS[:8])  # beyond the 300-token model: windows, one vector per residue
    assert model.embed({"long": long}, pool="residue", precision="fp32")["long"]["residue"].shape == (len(long), 32)


def test_esm_rare_residue_letters_map_to_x_not_unknown(backbones):
    tok = load_tokenizer(backbones["esm"])
    assert tok.encode("MJK").tolist() == tok.encode("MXK").tolist()  # J is not in ESM-2's alphabet


def test_hub_id_resolves_from_the_hf_cache_offline(backbones, tmp_path):
    cache = tmp_path / "hub"
    hub_cache(cache, "facebook/esm2_t0_tiny", backbones["esm"])
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    fasta = tmp_path / "x.fasta"
    fasta.write_text(">a\nMKTAYIAKQR\n>b\nMSQQ\n")
    out = tmp_path / "e.npz"
    cmd = [sys.executable, "-m", "protlm", "embed", str(fasta), "--model", "facebook/esm2_t0_tiny", "--out", str(out),
           "--pool", "residue"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert np.load(out)["b"].shape == (4, 32)
    cmd[cmd.index("facebook/esm2_t0_tiny")] = "facebook/not_cached"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith("or give a local directory") and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_every_command_with_every_backbone(backbones, kind, tmp_path, capsys):
    path = str(backbones[kind])
    cache = ["--cache-dir", str(tmp_path / "cache")]
    # continued pre-training on singles + pairs, from the model's weights and with its own tokenizer
    run = tmp_path / "pre"
    code, _, err = run_cli(["pretrain", "--model", path, "--out", str(run), "--corpus", str(DATA / "swissprot_50.fasta"),
                            "--pairs", str(DATA / "pairs_small.tsv"), "--max-steps", "2", "--tokens-per-batch", "1024",
                            "--warmup-steps", "0", "--precision", "fp32", *cache], capsys)  # fmt: skip
    assert code in (0, None), err
    model = run / "model"
    assert json.loads((model / "config.json").read_text())["model_type"] == {"protbert": "bert"}.get(kind, kind)
    code, out, err = run_cli(["fill", "MKTAYIAK<mask>LLV", "--model", str(model), "--top-k", "999"], capsys)
    assert code in (0, None), err
    assert out.startswith("mask 1: ")
    # fine-tune a sequence task and a per-residue task, evaluate, predict
    for task, data in (
        ("localization", DATA / "tasks" / "deeploc_small.fasta"),
        ("ss3", DATA / "tasks" / "ss_dssp_small.tsv"),
    ):
        ft = tmp_path / task
        code, _, err = run_cli(["finetune", "--task", task, "--data", str(data), "--model", str(model), "--out", str(ft),
                                "--max-steps", "2", *cache], capsys)  # fmt: skip
        assert code in (0, None), err
        pred = tmp_path / f"{task}.tsv"
        code, _, err = run_cli(["predict", str(DATA / "swissprot_50.fasta"), "--model", str(ft / "seed-0" / "model"),
                                "--out", str(pred)], capsys)  # fmt: skip
        assert code in (0, None), err
        if task == "ss3":
            import pandas as pd

            states = pd.read_csv(pred, sep="\t")["predicted"]
            assert [len(s) for s in states] == [len(s) for s in SEQS]  # one state per residue, long ones windowed
    # attention maps and contacts (ESM-2: its own contact head)
    pdb = DATA / "structures" / "2hhb_ab.pdb.gz"
    att = tmp_path / "att.npz"
    code, _, err = run_cli(["attention", "export", "--model", path, "--pdb", str(pdb), "--chains", "A",
                            "--out", str(att)], capsys)  # fmt: skip
    assert code in (0, None), err
    maps = np.load(att)
    (key,) = [k for k in maps.files if k.endswith(".attention")]
    assert maps[key].shape == (2, 2, 141, 141)
    sites = tmp_path / "sites.json"
    code, _, err = run_cli(["attention", "sites", "--model", path, "--pdb", str(pdb), "--chains", "A,B", "--out",
                            str(sites)], capsys)  # fmt: skip
    assert code in (0, None), err
    assert sites.is_file()
    code, out, err = run_cli(["contacts", "--model", path, "--pdb", str(pdb), "--chain", "A"], capsys)
    assert code in (0, None), err
    assert ("ESM-2's own contact head" in err) == (kind == "esm") and "P@L/L2/L5" in out


@pytest.mark.parametrize("kind", KINDS)
def test_fill_takes_mask_with_every_backbone_and_prints_small_probabilities(backbones, kind, capsys):
    """`<mask>` is the one spelling the help gives: ProtBERT (whose own token is [MASK]) refused it. Every
    residue token is printed (--top-k 999) and none as 0.000, however many tokens share the mass."""
    path = str(backbones[kind])
    code, out, err = run_cli(["fill", "MKTAYIAK<mask>LLVA<mask>G", "--model", path, "--top-k", "999"], capsys)
    assert code in (0, None), err
    lines = out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["mask 1", "mask 2"]
    n_residue = int((load_tokenizer(path).residue_lengths > 0).sum())
    for line in lines:
        fields = line.split(":", 1)[1].split()
        probs = [float(p) for p in fields[1::2]]
        assert len(probs) == n_residue and min(probs) > 0 and "0.000" not in fields[1::2]
        assert sum(probs) == pytest.approx(1.0, abs=0.01)  # three significant digits each
    own = load_tokenizer(path).mask_token  # the tokenizer's own spelling means the same
    code, same, err = run_cli(["fill", f"MKTAYIAK{own}LLVA<mask>G", "--model", path, "--top-k", "999"], capsys)
    assert code in (0, None) and same == out, err


def test_fill_prints_probabilities_of_a_large_vocabulary_readably(monkeypatch, capsys):
    """Over a 10k-token vocabulary the top candidates hold ~1e-4 each: `.3f` printed them all as 0.000."""

    class Model:
        def fill(self, text, top_k):
            return [[("LLA", 0.000213), ("A", 1.23e-5), ("K", 0.4123)]]

    monkeypatch.setattr(protlm.api, "load", lambda model, device: Model())
    code, out, err = run_cli(["fill", "MK<mask>", "--model", "m"], capsys)
    assert code in (0, None), err
    assert out == "mask 1: LLA 0.000213  A 1.23e-05  K 0.412\n"


def test_lora_merge_reproduces_the_adapter_model_and_peft_loads_the_adapter(backbones, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForMaskedLM

    from protlm.models.lora import adapter_files, add_lora, has_lora, merge_lora

    model = AutoModelForMaskedLM.from_pretrained(backbones["esm"], use_safetensors=True).eval()
    add_lora(model, rank=4, targets=("query", "value"), base=str(backbones["esm"]))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero: give the adapter something to do
            torch.nn.init.normal_(p, std=0.2)
    ids = torch.tensor([[0, 20, 15, 11, 5, 19, 22, 2]])
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
    files = adapter_files(model)
    merge_lora(model)
    assert not has_lora(model) and not any("lora_" in n for n, _ in model.named_parameters())
    with torch.no_grad():
        merged = model(input_ids=ids).logits
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-5)
    adapter = tmp_path / "model"
    for name, content in files.items():
        (adapter / name).parent.mkdir(parents=True, exist_ok=True)
        (adapter / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    assert (
        len(load_file(adapter / "adapter" / "adapter_model.safetensors")) == 2 * 2 * 2
    )  # A, B x query, value x 2 layers
    base = AutoModelForMaskedLM.from_pretrained(backbones["esm"], use_safetensors=True).eval()
    with torch.no_grad():
        via_peft = PeftModel.from_pretrained(base, adapter / "adapter").eval()(input_ids=ids).logits
    torch.testing.assert_close(via_peft, adapted, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_lora_checkpointing_and_freeze_with_every_backbone(backbones, kind, tmp_path, capsys):
    from safetensors.numpy import load_file

    path = backbones[kind]

    def finetune(name: str, *extra: str) -> Path:
        code, _, err = run_cli(["finetune", "--task", "localization", "--data", str(DATA / "tasks" / "deeploc_small.fasta"),
                                "--model", str(path), "--out", str(tmp_path / name), "--max-steps", "2", "--lr", "1e-2",
                                "--cache-dir", str(tmp_path / "c"), *extra], capsys)  # fmt: skip
        assert code in (0, None), err
        return tmp_path / name / "seed-0" / "model"

    def changed(model: Path) -> set[str]:
        before, after = load_file(path / "model.safetensors"), load_file(model / "model.safetensors")
        return {k for k in before if k in after and not np.array_equal(before[k], after[k])}

    lora = finetune("lora", "--lora-rank", "4", "--gradient-checkpointing")
    assert (lora / "adapter" / "adapter_config.json").is_file()
    diff = changed(lora)
    assert diff and all(k.endswith((".query.weight", ".value.weight")) for k in diff)  # merged adapters only
    assert changed(finetune("frozen", "--freeze")) == set()  # the encoder as loaded; only the head trained


def test_lora_pretraining_resumes_bit_for_bit(backbones, tmp_path):
    from safetensors.numpy import load_file

    path = backbones["esm"]
    # LoRA pre-training: killed after step 2 and resumed equals 3 steps in one go, bit for bit
    common = ["pretrain", "--model", str(path), "--corpus", str(DATA / "swissprot_50.fasta"), "--tokens-per-batch",
              "1024", "--warmup-steps", "0", "--lora-rank", "2", "--precision", "fp32", "--save-every", "1",
              "--eval-every", "100", "--cache-dir", str(tmp_path / "c")]  # fmt: skip

    def pretrain(out: str, fault: str = "") -> subprocess.CompletedProcess:  # same process setup for every run
        env = {**os.environ, "PROTLM_FAULT": fault}
        cmd = [sys.executable, "-m", "protlm", *common, "--out", str(tmp_path / out), "--max-steps", "3"]
        return subprocess.run(cmd + (["--resume"] if out == "twice" and not fault else []), env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    assert pretrain("once").returncode == 0
    assert pretrain("twice", "step:2").returncode == -9  # SIGKILL right after step 2 (checkpoint 2 written)
    resumed = pretrain("twice")
    assert resumed.returncode == 0 and "LoRA adapters from" in resumed.stderr, resumed.stderr
    once, twice = (load_file(tmp_path / r / "model" / "model.safetensors") for r in ("once", "twice"))
    for k in once:
        np.testing.assert_array_equal(once[k], twice[k])


def test_model_directories_written_by_protlm_0_1_keep_loading():
    """tests/data/protlm_0.1: a masked LM and a fine-tuned localization model saved by protlm 0.1
    (commit 869ecf8), with the embeddings and probabilities that version computed for two proteins."""
    old = DATA / "protlm_0.1"
    expected = np.load(old / "expected.npz")
    seqs = {"P1": "MKTAYIAKQRQISFVKSHFSRQ", "P2": "MSQQKQQSWKPPNVPKCSPPQRSNPCLAPYSTPCGAPHSEGCHSSSQRPEVQKPRRARQKLRCL"
            "SRRQEPHLHCQSMSQQKQQSWKPPNVPKCSPP"}  # fmt: skip
    emb = protlm.load(old / "mlm").embed(seqs, pool=("mean", "residue", "cls"), precision="fp32")
    for rid, out in emb.items():
        for pool, value in out.items():
            np.testing.assert_allclose(value, expected[f"{rid}.{pool}"], atol=1e-5, rtol=1e-5)
    for p in protlm.load(old / "localization").predict(seqs):
        np.testing.assert_allclose(p.probabilities, expected[f"{p.id}.probabilities"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lora-targets", "nope"], "--lora-targets nope: no such linear layer in EsmTaskModel"),
        (["--lora-rank", "-1"], "lora_rank must be >= 0"),
        (["--lora-rank", "4", "--freeze"], "--freeze and --lora-rank exclude each other"),
    ],
)
def test_bad_memory_options_are_one_line(backbones, extra, message, tmp_path, capsys):
    code, _, err = run_cli(["finetune", "--task", "localization", "--data", str(DATA / "tasks" / "deeploc_small.fasta"),
                            "--model", str(backbones["esm"]), "--out", str(tmp_path / "x"), "--max-steps", "1",
                            "--cache-dir", str(tmp_path / "c"), "--lora-rank", "4", *extra], capsys)  # fmt: skip
    assert code == 2 and message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("protlm: error:")
