"""Training kernels for the CPU: attention with dropout in cache-sized pieces, and a cheaper dropout mask.

Why (bench/RESULTS.md, issue 17; esm-size, 8,192 tokens a batch, 2 cores): with attention dropout on,
PyTorch's SDPA leaves its flash kernel (which has no dropout on the CPU) for the math path. That path
writes every (batch, head, L, L) score tensor to memory several times over (scores, probabilities,
a float dropout mask drawn with `bernoulli_`, dropped probabilities) and keeps them for backward:
about two thirds of a training step, and several GB of activations.

`chunked_dropout_attention` computes the same function (softmax, then dropout on the probabilities,
then the weighted sum of values) in pieces of about 2^20 scores that stay in cache. For backward it
keeps the inputs, the output and the 1-byte dropout masks, and recomputes scores and probabilities
piece by piece, as FlashAttention does. The masks come from a generator seeded once per call from
torch's global RNG, so a step is a pure function of the seed as before (resume stays bitwise).

`keep_mask` draws 16 random bits an element (`random_` on int64 words, viewed as four int16 lanes)
and compares them with a threshold: one generator call per four elements instead of a float per
element. The drop probability is rounded to a multiple of 1/65,536 (0.1 becomes 0.1000061).

`training_kernels(model)` turns both on for the duration of training: it registers the attention
function with transformers' `AttentionInterface` (any model that dispatches through it: BERT,
RoBERTa, ESM) and swaps `nn.Dropout` modules for `FastDropout`; it restores both on exit, so what is
saved is the plain HF model. On CUDA, in evaluation, and without dropout, attention is HF's SDPA.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

NAME = "protlm_sdpa"
CHUNK_ELEMENTS = 1 << 20  # scores per piece: 4 MB in fp32 (2^18 to 2^22 measured within noise)
LANES = 65536


def keep_mask(shape, p: float, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 tensor of 0 (drop, with probability p rounded to a multiple of 1/65,536) and 1 (keep).
    uint8, not bool: multiplying by it is 4x faster here than `masked_fill_` or a bool factor."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(2**63), None, generator=generator)  # the full 64-bit range: four uniform int16 lanes
    lanes = words.view(torch.int16)[:n].view(shape)
    return (lanes >= round(p * LANES) - LANES // 2).view(torch.uint8)


class FastDropout(nn.Dropout):
    """`nn.Dropout` with the mask from `keep_mask` on the CPU; `nn.Dropout` itself elsewhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":  # CUDA's dropout is one fused kernel already
            return super().forward(x)
        return x.mul(keep_mask(x.shape, self.p, x.device)).mul_(1.0 / (1.0 - self.p))


def _pieces(b: int, h: int, lq: int, lk: int, budget: int) -> list[tuple[slice, slice]]:
    """(batch rows, heads) pieces of about `budget` scores each, in a fixed order."""
    per_head = lq * lk
    if h * per_head <= budget:  # several whole batch rows
        rows = max(1, budget // (h * per_head))
        return [(slice(i, min(b, i + rows)), slice(0, h)) for i in range(0, b, rows)]
    heads = max(1, budget // per_head)
    return [(slice(i, i + 1), slice(j, min(h, j + heads))) for i in range(b) for j in range(0, h, heads)]


class _ChunkedDropoutAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, bias, p: float, scale: float, seed: int, budget: int):
        # q (B, H, Lq, d), k and v (B, H, Lk, d) contiguous; bias None or float (B, 1, Lq | 1, Lk)
        out = torch.empty_like(q, dtype=v.dtype)
        keeps = []  # the dropout masks, 1 byte a score: kept for backward
        gen = torch.Generator(device=q.device).manual_seed(seed)
        for rows, heads in _pieces(q.shape[0], q.shape[1], q.shape[2], k.shape[2], budget):
            probs = _probs(q, k, bias, rows, heads, scale)
            keeps.append(keep_mask(probs.shape, p, q.device, gen))
            probs.mul_(keeps[-1])
            torch.bmm(probs.to(v.dtype), _flat(v, rows, heads), out=_flat(out, rows, heads))
        out.mul_(1.0 / (1.0 - p))
        ctx.save_for_backward(q, k, v, bias, out)
        ctx.args, ctx.keeps = (p, scale, budget), keeps
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, bias, out = ctx.saved_tensors
        (p, scale, budget), keeps = ctx.args, ctx.keeps
        grad_out = grad_out.contiguous()
        # rowsum(dP * P) over the dropped probabilities = rowsum(dO * O): no L x L pass needed
        delta = (grad_out.to(_acc(q)) * out.to(_acc(q))).sum(-1, keepdim=True)
        g = grad_out * (1.0 / (1.0 - p))
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        pieces = _pieces(q.shape[0], q.shape[1], q.shape[2], k.shape[2], budget)
        for (rows, heads), keep in zip(pieces, keeps, strict=True):
            probs = _probs(q, k, bias, rows, heads, scale)  # recomputed; the mask is the forward's
            dropped = probs * keep
            g_c = _flat(g, rows, heads)
            # dV = dropped^T g and dK = dS^T q, computed transposed: bmm copies a transposed L x L operand
            _flat(dv, rows, heads).copy_(torch.bmm(g_c.transpose(1, 2), dropped.to(g.dtype)).transpose(1, 2))
            ds = torch.bmm(g_c, _flat(v, rows, heads).transpose(1, 2)).to(_acc(q))
            ds.mul_(dropped).addcmul_(probs, _flat(delta, rows, heads), value=-1.0).mul_(scale)
            ds = ds.to(q.dtype)
            torch.bmm(ds, _flat(k, rows, heads), out=_flat(dq, rows, heads))
            _flat(dk, rows, heads).copy_(torch.bmm(_flat(q, rows, heads).transpose(1, 2), ds).transpose(1, 2))
        return dq, dk, dv, None, None, None, None, None


def _acc(x: torch.Tensor) -> torch.dtype:
    """The dtype softmax and its gradient are computed in: fp32, or the input's when wider."""
    return torch.promote_types(x.dtype, torch.float32)


def _flat(x: torch.Tensor, rows: slice, heads: slice) -> torch.Tensor:
    """The (rows, heads) piece of a contiguous (B, H, ...) tensor as a 3-d view: pieces are whole rows
    or heads of one row, so the view shares memory (bmm handles transposed operands without a copy)."""
    return x[rows, heads].flatten(0, 1)


def _probs(q, k, bias, rows: slice, heads: slice, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale + bias) of one piece, (pieces, Lq, Lk), in fp32 at least."""
    scores = torch.bmm(_flat(q, rows, heads), _flat(k, rows, heads).transpose(1, 2)).to(_acc(q))
    scores.mul_(scale)
    if bias is not None:
        n_heads = heads.stop - heads.start
        b = bias[rows]  # (rows, 1, Lq | 1, Lk), the same for every head
        scores.view(b.shape[0], n_heads, *scores.shape[1:]).add_(b)
    return torch.softmax(scores, -1)


def chunked_dropout_attention(q, k, v, bias, p: float, scale: float, budget: int = CHUNK_ELEMENTS):
    """softmax(q k^T * scale + bias), dropout p on it, times v; (B, H, Lq, d). The dropout seed is drawn
    from torch's global RNG."""
    seed = int(torch.randint(0, 2**62, (1,)).item())
    return _ChunkedDropoutAttention.apply(q.contiguous(), k.contiguous(), v.contiguous(), bias, p, scale, seed, budget)


def additive_bias(mask: torch.Tensor | None, dtype=torch.float32) -> torch.Tensor | None:
    """An SDPA-style mask (bool, True = attend; or additive float) as a float bias (B, 1, Lq | 1, Lk).
    A key-padding mask (the same for every query: an expanded view) keeps one query row."""
    if mask is None:
        return None
    if mask.dim() == 4 and mask.shape[2] > 1 and mask.stride(2) == 0:
        mask = mask[:, :, :1]
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
    return mask.to(dtype)


def attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers attention function: the chunked kernel when training with dropout on the CPU,
    transformers' own SDPA function otherwise."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cpu_dropout = dropout > 0 and query.device.type == "cpu" and torch.is_grad_enabled()
    special = any(kwargs.get(k) is not None for k in ("softcap", "position_bias", "sliding_window", "s_aux"))
    other = special or kwargs.get("output_attentions") or getattr(module, "num_key_value_groups", 1) > 1
    if not cpu_dropout or other or getattr(module, "is_causal", False):  # decoders, GQA, extras: HF's own
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)  # fmt: skip
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    bias = additive_bias(attention_mask)
    out = chunked_dropout_attention(query, key, value, bias, dropout, scale)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


@contextlib.contextmanager
def exact_gelu():
    """HF ESM's activation inside the block is `F.gelu`, one fused kernel, in place of its own `gelu`, five
    elementwise passes (`x * 0.5 * (1 + erf(x / sqrt(2)))`) over the widest activation: the same function
    (within 3e-6 in fp32), and a 1.3x faster ESM-2 8M forward on 2 CPU cores (bench/RESULTS.md, issue 29).
    Other families already call torch's gelu. Restored on exit."""
    import transformers.models.esm.modeling_esm as esm

    before = esm.gelu
    esm.gelu = nn.functional.gelu
    try:
        yield
    finally:
        esm.gelu = before


@contextlib.contextmanager
def training_kernels(model: nn.Module, enabled: bool = True):
    """Train `model` with protlm's CPU kernels inside the block; the model is plain HF again after it.
    Models whose attention does not dispatch through transformers' interface (Longformer) keep their own."""
    if not enabled:
        yield model
        return
    configs = [m.config for m in model.modules() if hasattr(m, "config") and hasattr(m.config, "_attn_implementation")]
    before = {id(c): (c, c._attn_implementation) for c in configs}
    swapped = []
    try:
        name = register()
        for c, impl in before.values():
            if impl == "sdpa":
                c._attn_implementation = name
        for parent in list(model.modules()):
            for child_name, child in list(parent.named_children()):
                if type(child) is nn.Dropout:
                    fast = FastDropout(child.p)
                    fast.train(child.training)
                    setattr(parent, child_name, fast)
                    swapped.append((parent, child_name, child))
        with exact_gelu():
            yield model
    finally:
        for parent, child_name, child in swapped:
            child.train(getattr(parent, child_name).training)
            setattr(parent, child_name, child)
        for c, impl in before.values():
            c._attn_implementation = impl
