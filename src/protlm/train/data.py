"""Pre-training data: singles, binding pairs, non-binding pairs and assemblies mixed with weights.

An *example* is a tuple of protein indices into one token source (a `TokenizedSet`, a memory-mapped
`TokenStore`, or both concatenated; 1 = single, 2 = pair, more = assembly) plus, for one longer than
the model, a random crop key: a single takes a fresh random window every epoch, and a pair or an
assembly is cropped part by part (`batching.crop_parts`: short parts stay whole, long ones share the
rest), never dropped. `PretrainData.epoch_batches(epoch)` is a pure
function of (seed, epoch): the same call gives the same batches in every process and after every
resume. An epoch is planned with array operations (`Examples`, `EpochPlan`): no Python object per
example, so planning 10^7 examples costs seconds, and a batch's tuples are built when it is trained.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from protlm.batching import (
    MaskingVocab,
    Packing,
    crop_parts,
    mask_for_mlm,
    pack_rows,
    pad_batch,
    plan_batch_bounds,
    plan_packed_bounds,
)
from protlm.pairs.negatives import NegativePool

KINDS = ("singles", "binding", "nonbinding", "assemblies")


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


@dataclass
class Batch:
    """A masked-LM batch: tensors plus bookkeeping for throughput."""

    input_ids: torch.Tensor  # (B, T) masked input
    attention_mask: torch.Tensor  # (B, T) 1 = real token, 0 = pad
    labels: torch.Tensor  # (B, T) original ids at scored positions, -100 elsewhere
    n_tokens: int  # real (non-pad) tokens
    # Packed rows (`batching.pack_rows`): each protein's number in its row and its own positions; the
    # objective attends within a protein only. None in padded batches.
    segments: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None

    # Worked out on the host, from the host's tensors, so that the step on the device never waits for
    # the device to answer a question about the data (a boolean index calls nonzero; transformers' mask
    # path asks whether any row is padded).
    @property
    def masked_index(self) -> torch.Tensor:
        """Flat positions of the scored tokens, (M,)."""
        return (self.labels.reshape(-1) != -100).nonzero().squeeze(1)

    @property
    def padded_rows(self) -> bool:
        return self.n_tokens < self.input_ids.numel()

    @property
    def n_padded(self) -> int:
        return int(self.input_ids.numel())


@dataclass
class Examples:
    """The examples of one epoch as arrays: example e is the proteins `members[offsets[e]:offsets[e + 1]]`."""

    members: np.ndarray  # (total members,) protein indices (int32 below 2^31 proteins, else int64)
    offsets: np.ndarray  # (n + 1,) likewise

    @staticmethod
    def concat(blocks: list[np.ndarray | Examples]) -> Examples:
        """From (n_i, k_i) blocks of fixed arity (singles, pairs) and `Examples` of any arity (assemblies)."""
        blocks = [b for b in blocks if len(b)]
        if not blocks:
            return Examples(np.zeros(0, np.int64), np.zeros(1, np.int64))
        flat = [b.members if isinstance(b, Examples) else b.reshape(-1) for b in blocks]
        sizes = [b.sizes() if isinstance(b, Examples) else np.full(len(b), b.shape[1]) for b in blocks]
        # int32 where it fits: an epoch of 10^7 examples is then ~40 bytes an example, not ~80
        total = sum(len(f) for f in flat)
        top = max(int(f.max()) for f in flat)
        dtype = np.int32 if max(total, top) < np.iinfo(np.int32).max else np.int64
        offsets = np.zeros(sum(len(z) for z in sizes) + 1, dtype=dtype)
        np.cumsum(np.concatenate([z.astype(dtype, copy=False) for z in sizes]), out=offsets[1:])
        return Examples(np.concatenate([f.astype(dtype, copy=False) for f in flat]), offsets)

    @staticmethod
    def from_tuples(rows: list[tuple[int, ...]]) -> Examples:
        sizes = np.array([len(r) for r in rows], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return Examples(np.array([i for r in rows for i in r], dtype=np.int64), offsets)

    def take(self, rows: np.ndarray) -> Examples:
        """The examples `rows` (any order, repeats allowed), gathered as arrays."""
        rows = np.asarray(rows, dtype=np.int64)
        sizes = np.diff(self.offsets)[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        starts = np.repeat(np.asarray(self.offsets[:-1])[rows] - offsets[:-1], sizes)
        return Examples(np.asarray(self.members)[starts + np.arange(offsets[-1])], offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        return tuple(self.members[self.offsets[k] : self.offsets[k + 1]].tolist())

    def index(self, example: tuple[int, ...]) -> int:
        return next(k for k in range(len(self)) if self[k] == example)

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def token_lengths(self, protein_lengths: np.ndarray, template) -> np.ndarray:
        """(n,) assembled lengths: the members' tokens + the template's specials (`Template.length`)."""
        if not len(self):
            return np.zeros(0, dtype=np.int64)
        per_member = np.asarray(protein_lengths)[self.members].astype(np.int32, copy=False)
        out = np.add.reduceat(per_member, self.offsets[:-1])
        sizes = np.diff(self.offsets).astype(np.int32)
        out += len(template.prefix) + len(template.suffix) + (sizes - 1) * len(template.between)
        return out


@dataclass
class EpochPlan:
    """Token-budget batches of one epoch; `plan[b]` -> [(example tuple, crop key), ...], built lazily."""

    examples: Examples
    crops: np.ndarray  # (n,) crop key of each example longer than the model (batching.crop_parts); else 0
    order: np.ndarray  # examples sorted by length
    bounds: np.ndarray  # sorted batch p = order[bounds[p]:bounds[p + 1]]
    batch_order: np.ndarray  # the shuffled order batches are trained in

    def __len__(self) -> int:
        return len(self.batch_order)

    def __getitem__(self, b: int) -> list[tuple[tuple[int, ...], int]]:
        p = self.batch_order[b]
        return [
            (self.examples[e], int(self.crops[e])) for e in self.order[self.bounds[p] : self.bounds[p + 1]].tolist()
        ]


@dataclass
class PretrainData:
    """The example pools of one run and how to mix them into epochs."""

    tset: Any  # TokenizedSet, TokenStore or ConcatTokens: len, lengths, get(i), ids[i]
    max_tokens: int  # incl. special tokens
    singles: np.ndarray  # (n,) protein indices
    binding: np.ndarray  # (m, 2)
    nonbinding: np.ndarray  # (k, 2) given negatives; empty -> drawn from `pool` each epoch
    pool: NegativePool | None  # the proteins (and rules) negatives are drawn from
    weights: dict[str, float]
    tokenizer: Any  # tokenization.ProteinTokenizer: template, pad id, masking vocabulary
    seed: int = 0
    skipped: Counter = field(default_factory=Counter)
    cropped: Counter = field(default_factory=Counter)  # examples longer than the model, cropped part by part
    assemblies: Examples = field(default_factory=lambda: Examples.from_tuples([]))  # 2+ proteins each

    def __post_init__(self) -> None:
        self.template = self.tokenizer.template
        self.masking = MaskingVocab.of(self.tokenizer)
        lengths = self.tset.lengths
        for kind in ("binding", "nonbinding"):
            pairs = getattr(self, kind)
            if len(pairs):
                over = lengths[pairs].sum(axis=1) + self.template.overhead(2) > self.max_tokens
                if over.any():
                    self.cropped[f"{kind} pairs longer than {self.max_tokens} tokens"] += int(over.sum())
        sizes = self.assemblies.sizes()
        room = sizes <= self.max_tokens - len(self.template.prefix) - len(self.template.suffix) - (sizes - 1) * len(
            self.template.between)  # fmt: skip
        if (~room).any():  # one token per chain cannot fit: nothing to crop to
            self.skipped[f"assemblies of more chains than {self.max_tokens} tokens hold"] += int((~room).sum())
            self.assemblies = self.assemblies.take(np.flatnonzero(room))
        over = self.assemblies.token_lengths(lengths, self.template) > self.max_tokens
        if over.any():
            self.cropped[f"assemblies longer than {self.max_tokens} tokens"] += int(over.sum())

    def kind_sizes(self) -> dict[str, int]:
        can_draw = self.pool is not None and len(self.pool) > 1
        n_neg = len(self.nonbinding) if len(self.nonbinding) else (len(self.binding) if can_draw else 0)
        return {"singles": len(self.singles), "binding": len(self.binding), "nonbinding": n_neg,
                "assemblies": len(self.assemblies)}  # fmt: skip

    def epoch_counts(self) -> dict[str, int]:
        """Examples of each kind per epoch: the weights split the pools' total size."""
        sizes = self.kind_sizes()
        active = {k: w for k, w in self.weights.items() if w > 0 and sizes[k] > 0}
        total = sum(sizes[k] for k in active)
        wsum = sum(active.values())
        return {k: int(round(total * active.get(k, 0) / wsum)) if active else 0 for k in KINDS}

    def _draw(self, pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """n rows of `pool` without replacement, cycling through reshuffled passes when n > len."""
        reps = -(-n // len(pool))
        idx = np.concatenate([rng.permutation(len(pool)) for _ in range(reps)])[:n]
        return pool[idx]

    def sample_negatives(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n random pairs of `pool` proteins that pass its rules (not self, same organism, not known
        to bind), drawn and filtered as arrays; those longer than the model are cropped as binding pairs are."""
        if self.pool is None:
            return np.zeros((0, 2), np.int64)
        return self.pool.draw(n, rng).astype(np.int64)

    def epoch_examples(self, epoch: int) -> tuple[Examples, np.ndarray, np.ndarray]:
        """(examples, example lengths, crop starts) of one epoch; deterministic in (seed, epoch)."""
        rng = _rng(self.seed, 1, epoch)
        counts = self.epoch_counts()
        blocks: list[np.ndarray | Examples] = []
        if counts["singles"]:
            blocks.append(self._draw(self.singles, counts["singles"], rng)[:, None])
        if counts["binding"]:
            blocks.append(self._draw(self.binding, counts["binding"], rng))
        if counts["nonbinding"]:
            neg = self.nonbinding if len(self.nonbinding) else self.sample_negatives(counts["nonbinding"], rng)
            blocks.append(self._draw(neg, counts["nonbinding"], rng) if len(neg) else neg)
        if counts["assemblies"]:
            rows = self._draw(np.arange(len(self.assemblies)), counts["assemblies"], rng)
            blocks.append(self.assemblies.take(rows))
        examples = Examples.concat(blocks)
        lengths = self.tset.lengths
        ex_len = examples.token_lengths(lengths, self.template)
        # Longer than the model: a crop key, so a fresh random window (of each part) every epoch.
        crops = np.zeros(len(examples), dtype=np.int32)
        over = np.flatnonzero(ex_len > self.max_tokens)
        crops[over] = rng.integers(0, np.iinfo(np.int32).max, size=len(over))
        return examples, np.minimum(ex_len, self.max_tokens), crops

    def epoch_batches(self, epoch: int, tokens_per_batch: int, packing: Packing | None = None) -> EpochPlan:
        """Token-budget batches of (example, crop start) for one epoch: of similar lengths, padded; or,
        with `packing`, of any lengths, to be packed into its rows."""
        examples, ex_len, crops = self.epoch_examples(epoch)
        rng = _rng(self.seed, 2, epoch)
        if packing is None:
            order, bounds, batch_order = plan_batch_bounds(ex_len, tokens_per_batch, rng)
        else:
            order, bounds, batch_order = plan_packed_bounds(ex_len, packing.capacity, rng)
        return EpochPlan(examples, crops, order, bounds, batch_order)

    @property
    def content(self) -> int:
        """Content tokens of a single protein's window."""
        return self.max_tokens - self.template.overhead(1)

    def make_batch(
        self,
        items: list[tuple[tuple[int, ...], int]],
        generator: torch.Generator,
        mlm: float = 0.15,
        packing: Packing | None = None,
    ) -> Batch:
        """Assemble, pad (or pack) and mask one batch (masking drawn from `generator`)."""
        seqs = []
        for example, key in items:
            parts = [self.tset.get(i) for i in example]
            budget = self.max_tokens - self.template.overhead(len(parts))
            if sum(len(p) for p in parts) > budget:
                parts = crop_parts(parts, budget, key)
            seqs.append(self.tokenizer.assemble(parts))
        pad = self.tokenizer.pad_token_id
        if packing is not None:
            packed = pack_rows(seqs, packing.row_len, packing.rows, pad, packing.position_offset)
            masked, labels = mask_for_mlm(packed.input_ids, self.masking, generator, mlm)
            n = int(packed.attention_mask.sum())
            return Batch(masked, packed.attention_mask, labels, n, packed.segments, packed.position_ids)
        ids, attn = pad_batch(seqs, pad)
        masked, labels = mask_for_mlm(ids, self.masking, generator, mlm)
        return Batch(masked, attn, labels, int(attn.sum()))
