"""Forward passes of a masked LM for variant scoring: which window each pass sees, and the passes batched.

A *request* asks for log p(target | input) at one token of one token sequence, with at most one token masked:
`(seq, mask, centre, read, target)`, where `mask` is -1 for an unmasked pass. The pass sees the window of
the sequence centred on `centre` (ProteinGym's rule, `centred_window`), so a request is a pure function of
the sequence, not of the other requests. Requests whose masked windows have the same content share one
forward pass; passes are sorted by length and batched by a token budget; the masked-LM head runs only on
the positions read. Log-probabilities are a log-softmax over the full vocabulary, as ESM and ProteinGym
compute them.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from protlm.batching import pad_batch, plan_batches
from protlm.device import autocast
from protlm.models.kernels import exact_gelu
from protlm.models.loading import mlm_head
from protlm.models.longformer import encoder_kwargs

SEQ, MASK, CENTRE, READ, TARGET = range(5)  # the columns of a request array


def centred_window(centre: int, length: int, window: int) -> tuple[int, int]:
    """ProteinGym's `get_optimal_window`: [start, end) of `window` tokens around `centre` in a sequence of
    `length` tokens (specials included), clipped to the ends; the whole sequence when it fits. In the
    middle the window is [centre - window // 2, centre + window // 2)."""
    half = window // 2
    if length <= window:
        return 0, length
    if centre < half:
        return 0, window
    if centre >= length - half:
        return length - window, length
    return centre - half, centre + half


class Passes:
    """Batched forward passes of an HF `*ForMaskedLM` (any backbone of models/backbones.py)."""

    def __init__(self, model, mask_id: int, pad_id: int, window: int, tokens_per_batch: int = 16384, dtype=None):
        self.model, self.mask_id, self.pad_id, self.window = model.eval(), mask_id, pad_id, window
        self.encoder, self.head = model.base_model, mlm_head(model)
        self.tokens_per_batch, self.dtype = tokens_per_batch, dtype
        self.device = next(model.parameters()).device
        self.progress = None  # a progress bar (`protlm.progress`) counting forward passes, while one is set

    def log_probs(self, seqs: list[np.ndarray], requests: np.ndarray) -> np.ndarray:
        """(n,) float64: log p(target) of each request (an (n, 5) int array: seq, mask, centre, read, target)."""
        requests = np.asarray(requests, dtype=np.int64).reshape(-1, 5)
        out = np.empty(len(requests), dtype=np.float64)
        if not len(requests):
            return out
        inputs, first, forward = self._forwards(seqs, requests)
        if self.progress is not None:  # the passes of this round join the bar's total (for its ETA)
            self.progress.total = (self.progress.total or 0) + len(inputs)
        lengths = np.array([len(x) for x in inputs])
        for batch in plan_batches(lengths, self.tokens_per_batch, np.random.default_rng(0)):
            self._batch(inputs, batch, forward, requests, first, out)
            if self.progress is not None:
                self.progress.update(len(batch))
        return out

    def _forwards(self, seqs, requests) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """The distinct masked windows (model inputs), each request's window start, and its forward index."""
        inputs, index = [], {}
        first = np.empty(len(requests), dtype=np.int64)
        forward = np.empty(len(requests), dtype=np.int64)
        for k, (s, mask, centre, _, _) in enumerate(requests.tolist()):
            start, end = centred_window(centre, len(seqs[s]), self.window)
            ids = seqs[s][start:end].copy()
            if mask >= 0:
                ids[mask - start] = self.mask_id
            key = hashlib.blake2b(ids.tobytes(), digest_size=16).digest()
            if key not in index:
                index[key] = len(inputs)
                inputs.append(ids)
            first[k], forward[k] = start, index[key]
        return inputs, first, forward

    @torch.inference_mode()
    def _batch(self, inputs, batch: np.ndarray, forward, requests, first, out) -> None:
        """One padded batch of forward passes; fills `out` for the requests that read from it."""
        row_of = np.full(len(inputs), -1, dtype=np.int64)
        row_of[batch] = np.arange(len(batch))
        mine = np.flatnonzero(row_of[forward] >= 0)
        ids, attention = pad_batch([inputs[i] for i in batch], self.pad_id)
        ids, attention = ids.to(self.device), attention.to(self.device)
        with autocast(self.device, self.dtype), exact_gelu():
            hidden = self.encoder(input_ids=ids, attention_mask=attention, **encoder_kwargs(self.model.config, ids))[0]
            rows = torch.from_numpy(row_of[forward[mine]]).to(self.device)
            cols = torch.from_numpy(requests[mine, READ] - first[mine]).to(self.device)
            logits = self.head(hidden[rows, cols])  # (n, vocab): the head on the positions read only
        log_p = torch.log_softmax(logits.float(), dim=-1)
        targets = torch.from_numpy(requests[mine, TARGET]).to(self.device)
        out[mine] = log_p.gather(1, targets[:, None])[:, 0].double().cpu().numpy()
