"""The backbone table (models/backbones.py) is the one home of what protlm knows about a model family:
every entry names real transformers classes, loading a model reads its config.json once, and a family
added as one entry (XLM-RoBERTa here) works in embed, pretrain and fine-tuning with no other edit."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from backbones import build_esm, build_protbert
from conftest import DATA, run_cli
from protlm.errors import ProtlmError
from protlm.models.backbones import BACKBONES, Backbone, backbone
from protlm.models.loading import POSITION_OFFSETS, open_model
from protlm.tasks.model import task_class, task_model_class

SEQS = ["MKTAYIAKQRQISFVKSHFSRQ", "MSDNELLKSLL", "GAVLIPFMWSTCYNQDEKRH"]


def test_every_entry_names_real_classes_and_builds_a_task_model():
    import transformers

    for name, b in BACKBONES.items():
        assert b.name == name and POSITION_OFFSETS[name] == b.position_offset
        for suffix in ("Model", "PreTrainedModel", "ForMaskedLM", "Config"):
            assert hasattr(transformers, b.hf_prefix + suffix), (name, suffix)
        cls = task_class(name)
        assert (
            cls.__name__ == b.task_model
            and cls.base_model_prefix == getattr(transformers, b.hf_prefix + "PreTrainedModel").base_model_prefix
        )
        config = getattr(transformers, b.hf_prefix + "Config")(model_type=name)
        assert task_model_class(config) is cls  # built once per family


@pytest.mark.parametrize("kind", [None, "gpt2", ["roberta"], 7])
def test_an_unknown_family_is_one_line(kind):
    with pytest.raises(ProtlmError) as e:
        backbone({"model_type": kind}, "x/config.json")
    assert str(e.value).startswith("x/config.json: protlm supports roberta, longformer, esm, bert") and "\n" not in str(
        e.value
    )


class _Opens:
    """Counts files opened under a directory (a sys audit hook: every open, Python's or a library's)."""

    hooked = False
    watched: list[Path] = []
    counts: dict[str, int] = {}

    @classmethod
    def watch(cls, directory: Path) -> dict[str, int]:
        if not cls.hooked:
            sys.addaudithook(cls._hook)  # an audit hook cannot be removed: it stays idle once the list is empty
            cls.hooked = True
        cls.watched, cls.counts = [directory.resolve()], {}
        return cls.counts

    @classmethod
    def _hook(cls, event, args):
        if event == "open" and cls.watched and isinstance(args[0], str | Path):
            path = Path(args[0])
            if path.is_absolute() and path.parent.resolve() == cls.watched[0]:
                cls.counts[path.name] = cls.counts.get(path.name, 0) + 1


@pytest.mark.parametrize("build", [build_esm, build_protbert])
@pytest.mark.parametrize("load", ["encoder", "masked_lm"])
def test_loading_a_model_reads_config_json_once(build, load, tmp_path):
    path = build(tmp_path / "m")
    counts = _Opens.watch(path)
    try:
        getattr(open_model(path), load)()
    finally:
        _Opens.watched = []
    assert counts.get("config.json") == 1, counts


def _xlm_roberta(out: Path) -> Path:
    """A tiny XLM-RoBERTa MLM over protlm's BPE tokenizer: a family protlm's table does not list."""
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    from protlm.tokenization import load_tokenizer

    tok = load_tokenizer(DATA / "tokenizer_bpe300")
    config = XLMRobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=66, pad_token_id=tok.pad_token_id,
                              bos_token_id=tok.cls_token_id, eos_token_id=tok.template.suffix[-1])  # fmt: skip
    torch.manual_seed(0)
    XLMRobertaForMaskedLM(config).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def test_a_family_added_as_one_entry_works_in_every_stage(tmp_path, capsys, monkeypatch):
    from transformers import AutoModel

    import protlm

    model = _xlm_roberta(tmp_path / "xlmr")
    corpus = ["--corpus", str(DATA / "swissprot_50.fasta")]
    pretrain = ["pretrain", "--model", str(model), *corpus, "--max-steps", "2", "--tokens-per-batch", "512",
                "--warmup-steps", "0", "--precision", "fp32", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    code, _, err = run_cli([*pretrain, "--out", str(tmp_path / "refused")], capsys)
    assert code == 2 and "protlm supports roberta, longformer, esm, bert backbones, found 'xlm-roberta'" in err

    entry = Backbone("xlm-roberta", "XLM-RoBERTa", "XLMRoberta", "as RoBERTa", 2, packable=True,
                     task_model="XlmRobertaTaskModel")  # fmt: skip
    monkeypatch.setitem(BACKBONES, "xlm-roberta", entry)
    hf = AutoModel.from_pretrained(model, add_pooling_layer=False, use_safetensors=True).eval()
    tok = open_model(model).tokenizer()
    ids = torch.as_tensor(np.asarray(tok.assemble([tok.encode(SEQS[0])])))[None]
    with torch.no_grad():
        expected = hf(input_ids=ids).last_hidden_state[0, 0].numpy()
    got = protlm.load(model).embed({"a": SEQS[0]}, pool="cls", precision="fp32")["a"]["cls"]
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)

    code, _, err = run_cli([*pretrain, "--pack", "on", "--out", str(tmp_path / "pt")], capsys)
    assert code in (0, None), err
    assert "packed batches" in err
    ft = tmp_path / "ft"
    code, _, err = run_cli(["finetune", "--task", "localization", "--data", str(DATA / "tasks" / "deeploc_small.fasta"),
                            "--model", str(tmp_path / "pt" / "model"), "--max-steps", "2", "--out", str(ft),
                            "--cache-dir", str(tmp_path / "cache")], capsys)  # fmt: skip
    assert code in (0, None), err
    assert type(open_model(ft / "seed-0" / "model").task_model()).__name__ == "XlmRobertaTaskModel"
