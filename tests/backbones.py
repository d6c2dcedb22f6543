"""Tiny random backbones with their real vocabularies, built locally (no download), and an HF cache.

- ESM-2: `EsmForMaskedLM` (rotary positions, token dropout) + `EsmTokenizer` over ESM's 33-token alphabet.
- ProtBERT: `BertForMaskedLM` + `BertTokenizer` over ProtBERT's 30 tokens (residues separated by spaces).
- RoBERTa: `RobertaForMaskedLM` + a byte-level BPE `vocab.json` / `merges.txt`, as paccmann_proteomics released.

The weights are random: these fixtures test plumbing (ids, templates, alignment, loading), not biology.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

# facebook/esm2_t6_8M_UR50D vocab.txt, in order.
ESM_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q",
             "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>"]  # fmt: skip
# Rostlab/prot_bert vocab.txt, in order.
PROTBERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "L", "A", "G", "V", "E", "S", "I", "K", "R", "D",
                  "T", "P", "N", "Q", "F", "Y", "M", "H", "C", "W", "X", "U", "B", "Z", "O"]  # fmt: skip
SIZE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def build_esm(out: Path, max_tokens: int = 64, seed: int = 0) -> Path:
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(ESM_VOCAB))
    tok = EsmTokenizer(str(out / "vocab.txt"))
    config = EsmConfig(vocab_size=len(ESM_VOCAB), **SIZE, max_position_embeddings=max_tokens + 2,
                       position_embedding_type="rotary", token_dropout=True, emb_layer_norm_before=False,
                       pad_token_id=1, mask_token_id=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    torch.manual_seed(seed)
    EsmForMaskedLM(config).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def build_protbert(out: Path, max_tokens: int = 64, seed: int = 0) -> Path:
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(PROTBERT_VOCAB) + "\n")
    tok = BertTokenizer(vocab=str(out / "vocab.txt"), do_lower_case=False)
    config = BertConfig(vocab_size=len(PROTBERT_VOCAB), **SIZE, max_position_embeddings=max_tokens,
                        type_vocab_size=2, pad_token_id=0, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)  # fmt: skip
    torch.manual_seed(seed)
    BertForMaskedLM(config).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def build_roberta_bpe(out: Path, sequences: list[str], max_tokens: int = 64, seed: int = 0) -> Path:
    """paccmann's layout: byte-level BPE `vocab.json` + `merges.txt` (no tokenizer.json), RoBERTa MLM."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizer

    out.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(sequences, vocab_size=400, min_frequency=2, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])  # fmt: skip
    bpe.save_model(str(out))
    tok = RobertaTokenizer(vocab=str(out / "vocab.json"), merges=str(out / "merges.txt"))
    config = RobertaConfig(vocab_size=len(tok), **SIZE, max_position_embeddings=max_tokens + 2, type_vocab_size=1,
                           pad_token_id=1, bos_token_id=0, eos_token_id=2, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0)  # fmt: skip
    torch.manual_seed(seed)
    RobertaForMaskedLM(config).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    for f in ("tokenizer.json",):  # keep paccmann's layout: vocabulary files only
        (out / f).unlink(missing_ok=True)
    return out


def hub_cache(cache: Path, repo_id: str, source: Path) -> Path:
    """Lay `source` out as the standard HF cache entry of `repo_id` (what a download leaves):
    models--ORG--NAME/refs/main -> commit, snapshots/COMMIT/files."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    entry = cache / f"models--{repo_id.replace('/', '--')}"
    snap = entry / "snapshots" / commit
    snap.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, snap, dirs_exist_ok=True)
    (entry / "refs").mkdir(exist_ok=True)
    (entry / "refs" / "main").write_text(commit)
    return snap


def config_of(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())
