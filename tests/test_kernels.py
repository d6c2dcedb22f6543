"""protlm's CPU training kernels (models/kernels.py): the chunked attention-dropout function equals the
math it replaces, piece by piece and in gradients; the dropout masks have the right rate; and
`training_kernels` leaves a plain HF model behind."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import AutoModelForMaskedLM, BertConfig, EsmConfig, RobertaConfig

from protlm.models import kernels
from protlm.models.kernels import FastDropout, _pieces, chunked_dropout_attention, keep_mask, training_kernels


def reference(q, k, v, bias, p, scale, seed, budget):
    """The same function written out with the whole L x L tensors (autograd does the backward)."""
    gen = torch.Generator().manual_seed(seed)
    keep = torch.zeros(q.shape[:3] + k.shape[2:3], dtype=q.dtype)
    for rows, heads in _pieces(q.shape[0], q.shape[1], q.shape[2], k.shape[2], budget):
        shape = keep[rows, heads].flatten(0, 1).shape
        keep[rows, heads] = keep_mask(shape, p, generator=gen).to(q.dtype).view(keep[rows, heads].shape)
    probs = torch.softmax(q @ k.transpose(-1, -2) * scale + (0 if bias is None else bias), -1)
    return (probs * keep / (1 - p)) @ v


@pytest.mark.parametrize("budget", [10**6, 3 * 7 * 7, 7 * 7])  # one piece; whole rows; heads of one row
@pytest.mark.parametrize("padded", [False, True])
def test_chunked_attention_equals_the_math_and_its_gradients(budget, padded):
    gen = torch.Generator().manual_seed(1)
    b, h, n, d = 3, 4, 7, 5
    q, k, v = (torch.randn(b, h, n, d, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias = None
    if padded:  # row 0 full, row 1 three pad keys, row 2 one real key
        lengths = torch.tensor([7, 4, 1])
        real = torch.arange(n)[None, :] < lengths[:, None]
        bias = kernels.additive_bias(real[:, None, None, :].expand(b, 1, n, n), torch.float64)
        assert bias.shape == (b, 1, 1, n)  # a key-padding mask keeps one query row
    seed, p, scale = 1234, 0.3, d**-0.5
    out = kernels._ChunkedDropoutAttention.apply(q, k, v, bias, p, scale, seed, budget)
    ref = reference(q, k, v, bias, p, scale, seed, budget)
    torch.testing.assert_close(out, ref)
    grad = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    got = torch.autograd.grad(out, (q, k, v), grad)
    want = torch.autograd.grad(ref, (q, k, v), grad)
    for a, e in zip(got, want, strict=True):
        torch.testing.assert_close(a, e)
    if padded:  # nothing reaches a padded key's value
        assert got[2][1, :, 4:].abs().max() == 0


def test_chunked_attention_passes_gradcheck():
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(3))
    fn = lambda q, k, v: kernels._ChunkedDropoutAttention.apply(q, k, v, None, 0.2, 0.5, 7, 25)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k, v))


def test_dropout_seed_comes_from_the_global_rng():
    q = torch.randn(2, 2, 6, 4)
    torch.manual_seed(5)
    a = chunked_dropout_attention(q, q, q, None, 0.5, 0.5)
    torch.manual_seed(5)
    b = chunked_dropout_attention(q, q, q, None, 0.5, 0.5)
    c = chunked_dropout_attention(q, q, q, None, 0.5, 0.5)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_rate(p):
    mask = keep_mask((1000, 1000), p, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.uint8 and set(mask.unique().tolist()) == {0, 1}
    rate = 1 - mask.double().mean().item()
    assert abs(rate - round(p * 65536) / 65536) < 5 * (p * (1 - p) / 1e6) ** 0.5


def test_fast_dropout_matches_dropout_in_expectation_and_eval():
    drop = FastDropout(0.25)
    x = torch.ones(200_000, requires_grad=True)
    y = drop(x)
    assert set(y.unique().tolist()) <= {0.0, torch.tensor(1 / 0.75).item()}
    assert abs(y.mean().item() - 1) < 0.01
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient goes through the kept elements, scaled
    drop.eval()
    assert drop(x) is x


def _models():
    size = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, vocab_size=40, pad_token_id=1)  # fmt: skip
    return {
        "roberta": RobertaConfig(**size, max_position_embeddings=40),
        "bert": BertConfig(**size, max_position_embeddings=40),
        "esm": EsmConfig(**size, max_position_embeddings=40, position_embedding_type="rotary", mask_token_id=2),
    }


@pytest.mark.parametrize("kind", ["roberta", "bert", "esm"])
def test_training_kernels_run_the_models_and_restore_them(kind, monkeypatch):
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(_models()[kind], attn_implementation="sdpa")
    ids = torch.randint(3, 40, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    model.eval()
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
    calls = []
    real = kernels.chunked_dropout_attention
    monkeypatch.setattr(kernels, "chunked_dropout_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    with training_kernels(model):
        assert model.config._attn_implementation == kernels.NAME
        assert not any(type(m) is nn.Dropout for m in model.modules())
        with torch.no_grad():  # evaluation inside training: SDPA, no dropout, the same numbers
            torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, before)
        model.train()
        out = model(input_ids=ids, attention_mask=mask, labels=ids)
        out.loss.backward()
        model.eval()
    assert len(calls) == 2  # one per layer
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.config._attn_implementation == "sdpa"
    assert not any(isinstance(m, FastDropout) for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, before)


def test_kernels_off_keeps_hf_dropout():
    model = AutoModelForMaskedLM.from_config(_models()["roberta"], attn_implementation="sdpa")
    with training_kernels(model, enabled=False):
        assert model.config._attn_implementation == "sdpa"
        assert any(type(m) is nn.Dropout for m in model.modules())


def test_training_without_dropout_is_the_sdpa_model():
    config = _models()["roberta"]
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(config, attn_implementation="sdpa").train()
    ids = torch.randint(3, 40, (2, 10))
    plain = model(input_ids=ids, labels=ids).loss
    with training_kernels(model):
        fast = model(input_ids=ids, labels=ids).loss
    torch.testing.assert_close(fast, plain)


def test_kernels_option_is_auto_on_or_off():
    from protlm.errors import ProtlmError
    from protlm.train.config import TrainConfig
    from protlm.train.loop import kernels_on

    TrainConfig(kernels="off", max_steps=1).validate()
    with pytest.raises(ProtlmError, match="kernels must be auto, on or off"):
        TrainConfig(kernels="fast", max_steps=1).validate()
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert kernels_on("auto", cpu) and not kernels_on("auto", cuda)  # CPU kernels: on where they were made for
    assert kernels_on("on", cuda) and not kernels_on("off", cpu)


def test_to_device_on_cpu_keeps_the_tensors():
    from protlm.train.loop import to_device

    fields = {"input_ids": torch.arange(6).view(2, 3), "attention_mask": torch.ones(2, 3, dtype=torch.long)}
    moved = to_device(fields, torch.device("cpu"))
    assert all(moved[k] is fields[k] for k in fields)  # no copy, no pinning without CUDA


def test_causal_or_special_attention_goes_to_hf(monkeypatch):
    calls = []
    monkeypatch.setattr(kernels, "chunked_dropout_attention", lambda *a, **kw: calls.append(1))
    q = torch.randn(1, 2, 4, 8)
    causal = nn.Module()
    causal.is_causal = True
    with torch.enable_grad():
        out, _ = kernels.attention(causal, q, q, q, None, dropout=0.1)
        kernels.attention(nn.Module(), q, q, q, None, dropout=0.1, position_bias=torch.zeros(1, 2, 4, 4))
    assert calls == [] and out.shape == (1, 4, 2, 8)


def test_exact_gelu_is_esms_gelu_fused_and_restored():
    """Inside `exact_gelu` an ESM model computes the same outputs (and gradients) with torch's fused gelu;
    HF's own function is back afterwards."""
    import transformers.models.esm.modeling_esm as esm

    own = esm.gelu
    x = torch.randn(4, 7, 64, dtype=torch.float64, requires_grad=True)
    with kernels.exact_gelu():
        assert esm.gelu is not own
        fused = esm.gelu(x)
        (g_fused,) = torch.autograd.grad(fused.sum(), x)
    assert esm.gelu is own
    plain = own(x)
    (g_plain,) = torch.autograd.grad(plain.sum(), x)
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-12)
    torch.testing.assert_close(g_fused, g_plain, rtol=0, atol=1e-12)
    torch.manual_seed(0)
    cfg = EsmConfig(vocab_size=33, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                    max_position_embeddings=64, position_embedding_type="rotary", pad_token_id=1, mask_token_id=32)  # fmt: skip
    model = AutoModelForMaskedLM.from_config(cfg).eval()
    ids = torch.randint(4, 24, (2, 20))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        with kernels.exact_gelu():
            out = model(input_ids=ids).logits
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    with pytest.raises(RuntimeError), kernels.exact_gelu():
        raise RuntimeError
    assert esm.gelu is own
