"""`train_step` called on its own (as the benchmarks call it): accumulation, schedule, clipping, freed gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from protlm.batching import MaskingVocab, mask_for_mlm, pad_batch
from protlm.device import make_accelerator
from protlm.models import build_mlm
from protlm.tokenization import load_tokenizer
from protlm.train.config import TrainConfig
from protlm.train.data import Batch
from protlm.train.loop import StepSetup, lr_multiplier, make_optimizer, train_step
from protlm.train.objective import MaskedLMObjective

DATA = Path(__file__).parent / "data"


def test_train_step_accumulates_schedules_and_clips():
    tok = load_tokenizer(DATA / "tokenizer_bpe300")
    objective = MaskedLMObjective(
        build_mlm(str(DATA / "micro.yaml"), tok, seed=0)
    ).eval()  # eval: no dropout, exact losses
    gen, vocab = torch.Generator().manual_seed(0), MaskingVocab.of(tok)
    batches = []
    for seqs in (["MKTAYIAKQR", "GSHMLE"], ["MVLSPADKTNVKAAW"]):
        ids, mask = pad_batch([tok.assemble([tok.encode(s)]) for s in seqs], tok.pad_token_id)
        inputs, labels = mask_for_mlm(ids, vocab, gen, mlm_probability=0.5)
        batches.append(Batch(inputs, mask, labels, int(mask.sum())))
    with torch.no_grad():
        expected = (
            sum(objective(input_ids=b.input_ids, attention_mask=b.attention_mask, labels=b.labels)[0] for b in batches)
            / 2
        )

    cfg = TrainConfig(max_steps=10, grad_accum=2, warmup_steps=4, lr=1e-3, max_grad_norm=1e-3, precision="fp32")
    acc = make_accelerator("cpu")
    prepared, opt = acc.prepare(objective, make_optimizer(objective, cfg))
    before = [p.detach().clone() for p in objective.parameters()]
    clipped, clip = [], acc.clip_grad_norm_
    acc.clip_grad_norm_ = lambda params, norm: clipped.append(norm) or clip(params, norm)
    result = train_step(StepSetup(prepared, opt, acc, cfg, 10, None), 2, iter(batches))

    assert float(result.loss) == pytest.approx(float(expected), rel=1e-5)  # the mean over the micro-batches
    assert result.lr == pytest.approx(1e-3 * lr_multiplier(2, 4, 10))
    assert (result.tokens, result.padded) == (sum(b.n_tokens for b in batches), sum(b.n_padded for b in batches))
    assert clipped == [1e-3]
    assert all(p.grad is None for p in objective.parameters())
    moved = torch.cat([(p.detach() - q).flatten() for p, q in zip(objective.parameters(), before, strict=True)])
    assert 0 < moved.abs().max() <= 2 * result.lr  # AdamW moves each weight by about lr at most
