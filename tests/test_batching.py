"""Batching and masking: token budgets, pair encoding, positions, MLM statistics, attention masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.models.roberta.modeling_roberta import RobertaEmbeddings

from protlm.batching import MaskingVocab, mask_for_mlm, pad_batch, padding_stats, plan_batches
from protlm.models import build_mlm
from protlm.tokenization import load_tokenizer


def test_plan_batches_respects_budget_and_covers_every_example_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 500, size=1000)
    batches = plan_batches(lengths, 4096, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    assert all(len(b) * lengths[b].max() <= 4096 for b in batches)
    assert padding_stats(lengths, batches).waste_pct < 5  # length buckets keep padding low
    again = plan_batches(lengths, 4096, np.random.default_rng(1))
    assert all((a == b).all() for a, b in zip(batches, again, strict=True))  # deterministic per seed
    # an example over the budget gets its own batch instead of being dropped
    assert [len(b) for b in plan_batches(np.array([5000, 10]), 4096, rng) if 0 in b] == [1]


CLS, PAD, SEP, MASK = 0, 1, 2, 4  # a protlm (RoBERTa-style) tokenizer's specials


def test_pair_encoding_and_positions_continue_across_both_proteins(data_dir):
    tok = load_tokenizer(data_dir / "tokenizer_bpe300")
    ids = tok.assemble([np.array([10, 11, 12]), np.array([20, 21])])
    assert ids.tolist() == [CLS, 10, 11, 12, SEP, SEP, 20, 21, SEP]  # <s> A </s></s> B </s>
    seq_a, seq_b = "MSQQKQQSWKPP", "MKTAYIAK"
    hf = tok.hf(seq_a, seq_b)["input_ids"]
    ours = tok.assemble([tok.encode(seq_a), tok.encode(seq_b)])
    assert ours.tolist() == hf  # identical to the tokenizer's RoBERTa pair template
    batch, _ = pad_batch([ours, ours[:5]], PAD)
    pos = RobertaEmbeddings.create_position_ids_from_input_ids(batch, padding_idx=PAD)
    assert pos[0].tolist() == list(range(2, 2 + len(ours)))  # B's positions continue A's
    assert pos[1, 5:].eq(PAD).all()  # pads get the padding position


def test_masking_statistics():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (64, 512))
    ids[:, 0], ids[:, -1], ids[:, 300:] = CLS, SEP, PAD
    maskable_ids = torch.arange(1000) >= 5
    vocab = MaskingVocab(MASK, maskable_ids, torch.arange(5, 1000))
    masked, labels = mask_for_mlm(ids, vocab, gen)
    maskable = ids >= 5
    selected = labels != -100
    assert not (selected & ~maskable).any()  # never specials or pads
    rate = selected.sum() / maskable.sum()
    assert abs(rate.item() - 0.15) < 0.005
    sel_in, sel_out = ids[selected], masked[selected]
    as_mask = (sel_out == MASK).float().mean().item()
    unchanged = (sel_out == sel_in).float().mean().item()
    assert abs(as_mask - 0.8) < 0.01
    assert abs(unchanged - 0.1) < 0.01 + 1 / 995  # 10% kept (+ random draws that hit the same token)
    assert (masked[~selected] == ids[~selected]).all()
    assert (sel_out[(sel_out != MASK) & (sel_out != sel_in)] >= 5).all()  # random tokens are never specials


def test_attention_mask_excludes_pads(data_dir):
    tok = load_tokenizer(data_dir / "tokenizer_bpe300")
    model = build_mlm(str(data_dir / "micro.yaml"), tok, dropout=None).eval()
    seq = tok.encode("MSQQKQQSWKPPNVPK")
    alone_ids, alone_mask = pad_batch([tok.assemble([seq])], PAD)
    padded_ids, padded_mask = pad_batch([tok.assemble([seq]), tok.assemble([np.arange(5, 60)])], PAD)
    with torch.no_grad():
        alone = model(input_ids=alone_ids, attention_mask=alone_mask).logits[0]
        padded = model(input_ids=padded_ids, attention_mask=padded_mask).logits[0, : alone.shape[0]]
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"hidden_size": 31}, "not a multiple of num_attention_heads"),
        ({"num_hidden_layers": -1}, "num_hidden_layers must be a positive integer"),
        ({"num_attention_heads": "four"}, "num_attention_heads"),
    ],
)
def test_bad_model_config_is_clear(data_dir, bad, message):
    from protlm.errors import ProtlmError

    tok = load_tokenizer(data_dir / "tokenizer_bpe300")
    with pytest.raises(ProtlmError, match=message):
        build_mlm(str(data_dir / "micro.yaml"), tok, **bad)
