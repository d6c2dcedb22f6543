"""Padding-free packing (pretrain --pack): proteins share rows under a block-diagonal mask with their own
positions, and the loss and gradients equal the padded batch's; planning covers every example once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.backbones import build_protbert
from tests.conftest import run_cli

from protlm.batching import (
    PACK_FILL,
    MaskingVocab,
    Packing,
    first_fit_rows,
    mask_for_mlm,
    pack_rows,
    pad_batch,
    plan_packed_bounds,
)
from protlm.models import build_mlm
from protlm.models.loading import POSITION_OFFSETS, open_model
from protlm.tokenization import load_tokenizer
from protlm.train.objective import MaskedLMObjective

DATA = Path(__file__).parent / "data"
SEQS = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "MSTNPKPQRKTKRNTNRRPQDVKFPGG", "MAHHHHHHVDDDDK",
        "GSHMLEDPVDAFQLLPLVSDE", "MKVLAAGIVGLLLA"]  # fmt: skip


def _grads(objective, **fields):
    loss, n = objective(**fields)
    params = [p for p in objective.parameters() if p.requires_grad]
    return loss, n, torch.autograd.grad(loss, params)


def _packed_equals_padded(objective, encoded: list[np.ndarray], pad_id: int, masking, row_len: int, offset: int):
    ids, mask = pad_batch(encoded, pad_id)
    inputs, labels = mask_for_mlm(ids, masking, torch.Generator().manual_seed(0), 0.3)
    loss, n, grads = _grads(objective, input_ids=inputs, attention_mask=mask, labels=labels)
    # the same masked proteins and labels, packed: pack_rows lays out equal lengths identically
    lengths = mask.sum(1).tolist()
    masked = [inputs[k, : lengths[k]].numpy() for k in range(len(encoded))]
    scored = [labels[k, : lengths[k]].numpy() for k in range(len(encoded))]
    packed = pack_rows(masked, row_len, 1, pad_id, offset)
    packed_labels = pack_rows(scored, row_len, 1, -100, offset).input_ids
    assert packed.input_ids.shape[0] < len(encoded)  # proteins really share rows
    fields = dict(input_ids=packed.input_ids, attention_mask=None, labels=packed_labels,
                  segments=packed.segments, position_ids=packed.position_ids)  # fmt: skip
    loss_p, n_p, grads_p = _grads(objective, **fields)
    assert n_p == n
    torch.testing.assert_close(loss_p, loss, rtol=0, atol=1e-5)
    for g, g_p in zip(grads, grads_p, strict=True):
        torch.testing.assert_close(g_p, g, rtol=0, atol=1e-5)


def test_packed_equals_padded_roberta_fp32():
    tok = load_tokenizer(DATA / "tokenizer_bpe300")
    torch.manual_seed(0)
    model = build_mlm(str(DATA / "micro.yaml"), tok, seed=0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    objective = MaskedLMObjective(model).train()
    encoded = [np.asarray(tok.assemble([tok.encode(s)])) for s in SEQS]
    _packed_equals_padded(objective, encoded, tok.pad_token_id, MaskingVocab.of(tok), 64, POSITION_OFFSETS["roberta"])


def test_packed_equals_padded_bert_fp32(tmp_path):
    lm = open_model(build_protbert(tmp_path / "protbert", max_tokens=128))
    objective = MaskedLMObjective(lm.masked_lm()).train()
    tok = lm.tokenizer()
    encoded = [np.asarray(tok.assemble([tok.encode(s)])) for s in SEQS]
    _packed_equals_padded(objective, encoded, tok.pad_token_id, MaskingVocab.of(tok), 80, POSITION_OFFSETS["bert"])


def test_first_fit_rows_and_pack_layout():
    rows = first_fit_rows([5, 3, 4, 2, 6], 8)
    assert sorted(k for r in rows for k in r) == [0, 1, 2, 3, 4]
    assert all(sum([5, 3, 4, 2, 6][k] for k in r) <= 8 for r in rows)
    packed = pack_rows([np.arange(10, 15), np.arange(20, 23)], 8, 2, 0, 2)
    assert packed.input_ids.shape == (2, 8)  # at least the rows asked for: one shape every step
    assert packed.input_ids[0].tolist() == [10, 11, 12, 13, 14, 20, 21, 22]
    assert packed.segments[0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1] and packed.segments[1].tolist() == [-1] * 8
    assert packed.position_ids[0].tolist() == [2, 3, 4, 5, 6, 2, 3, 4]
    assert int(packed.attention_mask.sum()) == 8


@pytest.mark.parametrize("row_len,tokens", [(64, 1024), (512, 8192)])
def test_packed_plan_covers_every_example_once_and_fits_its_rows(row_len, tokens):
    rng = np.random.default_rng(0)
    lengths = np.minimum(rng.lognormal(np.log(row_len / 4), 0.8, 3000).astype(int) + 3, row_len)
    packing = Packing.of(tokens, row_len, 2)
    order, bounds, batch_order = plan_packed_bounds(lengths, packing.capacity, np.random.default_rng(1))
    assert sorted(order.tolist()) == list(range(len(lengths)))
    batches = [order[bounds[p] : bounds[p + 1]] for p in batch_order]
    over = sum(len(first_fit_rows(lengths[b].tolist(), row_len)) > packing.rows for b in batches)
    assert over <= len(batches) // 100  # PACK_FILL leaves room for first-fit decreasing
    real = lengths.sum() / (len(batches) * packing.rows * row_len)
    assert real > PACK_FILL - 0.1


def test_pretrain_packed_runs_and_esm_is_refused(tmp_path, capsys):
    from tests.backbones import build_esm

    common = ["--tokenizer", str(DATA / "tokenizer_bpe300"), "--corpus", str(DATA / "swissprot_50.fasta"),
              "--tokens-per-batch", "512", "--max-tokens", "64", "--max-steps", "3", "--log-every", "1",
              "--precision", "fp32", "--cache-dir", str(tmp_path / "cache"), "--pack", "on"]  # fmt: skip
    code, out, err = run_cli(["pretrain", "--model", str(DATA / "micro.yaml"), "--out", str(tmp_path / "run"), *common],
                             capsys)  # fmt: skip
    assert code in (0, None), err
    assert "packed batches: 8 row(s) of 64 tokens" in out + err
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    esm = build_esm(tmp_path / "esm")
    capsys.readouterr()
    esm_args = ["pretrain", "--model", str(esm), "--out", str(tmp_path / "esm_run"), *common[2:]]
    code, out, err = run_cli(esm_args, capsys)
    last = err.strip().splitlines()[-1]  # after the log lines, one error line; no data prepared
    assert code == 2 and last.startswith("protlm: error: --pack on: esm models cannot be packed"), err
    assert err.count("protlm: error") == 1 and not (tmp_path / "esm_run" / "config.yaml").exists()
