"""Batching: token-budget batches over length buckets, input assembly and MLM masking.

Pipeline stage between the tokenized cache and the model. Everything random here takes an
explicit generator so that a batch is a pure function of (seed, epoch, batch index): that is what
makes kill-and-resume bitwise identical and DDP runs match single-process runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


def plan_batch_bounds(
    lengths: np.ndarray, tokens_per_batch: int, rng, max_batch_size: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token-budget batches as arrays: (order, bounds, batch_order).

    Examples are sorted by length (ties broken at random, so batches differ between epochs) and
    packed greedily: an example joins the open batch while (count + 1) x its length fits the budget
    (and the count stays under `max_batch_size`); an example longer than the budget gets a batch of
    its own. Sorted batch p is `order[bounds[p]:bounds[p + 1]]`; the batches are taken in the shuffled
    order `batch_order`. The packing loops over distinct lengths, not over examples, so planning an
    epoch of 10^7 examples costs a sort and a few arrays of its size.
    """
    n = len(lengths)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64)
    # Ascending length, random ties: a random permutation (O(n), not a sort of random keys), then a
    # stable sort by length (radix sort on uint16 lengths).
    lengths = np.asarray(lengths)
    shuffled = rng.permutation(n)
    keys = lengths[shuffled]
    order = shuffled[np.argsort(keys.astype(np.uint16) if keys.max() < 1 << 16 else keys, kind="stable")]
    sorted_lengths = lengths[order]
    cuts = np.flatnonzero(sorted_lengths[1:] != sorted_lengths[:-1]) + 1  # runs of equal length
    values, counts = sorted_lengths[np.r_[0, cuts]], np.diff(np.r_[0, cuts, n])
    cap = max_batch_size or n
    ends: list[np.ndarray] = []
    pos = open_count = 0  # examples placed so far; size of the open (last, unfinished) batch
    for v, m in zip(values.tolist(), counts.tolist(), strict=True):
        q = max(1, min(tokens_per_batch // max(v, 1), cap))  # batch size when v is the longest
        if open_count:
            take = min(m, max(0, q - open_count))  # the open batch's shorter examples stay with it
            pos, m, open_count = pos + take, m - take, open_count + take
            if m:  # the next example does not fit: close the open batch
                ends.append(np.array([pos]))
                open_count = 0
        if m:
            full, rest = divmod(m, q)
            ends.append(pos + q * np.arange(1, full + 1))
            pos, open_count = pos + m, rest
    if open_count:
        ends.append(np.array([pos]))
    bounds = np.concatenate([[0], *ends]).astype(np.int64)
    batch_order = np.arange(len(bounds) - 1)
    rng.shuffle(batch_order)
    return order, bounds, batch_order


# Packed batches are planned to this share of their rows' tokens, so that first-fit-decreasing puts every
# batch's proteins into its rows: on SCL2205's lengths (rows of 512 or 1,024 tokens, 8k or 64k a batch)
# none overflowed at 0.97 and a quarter to a half did at 1.0; the rows are then ~95% real tokens.
PACK_FILL = 0.97


def plan_packed_bounds(lengths: np.ndarray, capacity: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packed batches as arrays, (order, bounds, batch_order) as `plan_batch_bounds` gives them: the
    examples in random order (so long and short proteins share rows), cut into runs of at most
    `capacity` tokens (a longer example alone). One `searchsorted` per batch, none per example."""
    n = len(lengths)
    order = rng.permutation(n)
    cum = np.cumsum(np.asarray(lengths, dtype=np.int64)[order])
    ends, start = [], 0
    while start < n:
        base = int(cum[start - 1]) if start else 0
        start = max(start + 1, int(np.searchsorted(cum, base + capacity, side="right")))
        ends.append(start)
    bounds = np.array([0, *ends], dtype=np.int64)
    return order, bounds, np.arange(len(bounds) - 1)


def first_fit_rows(lengths: Sequence[int], row_len: int) -> list[list[int]]:
    """First-fit decreasing: the indices of `lengths` in each row of `row_len` tokens."""
    rows: list[list[int]] = []
    free: list[int] = []
    for k in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        row = next((r for r, room in enumerate(free) if room >= lengths[k]), None)
        if row is None:
            rows.append([])
            free.append(row_len)
            row = len(rows) - 1
        rows[row].append(k)
        free[row] -= lengths[k]
    return rows


@dataclass(frozen=True)
class Packing:
    """How batches are packed: `rows` rows of `row_len` tokens, positions counted from `position_offset`."""

    row_len: int
    rows: int
    position_offset: int

    @staticmethod
    def of(tokens_per_batch: int, row_len: int, position_offset: int) -> Packing:
        return Packing(row_len, max(1, tokens_per_batch // row_len), position_offset)

    @property
    def capacity(self) -> int:
        """Tokens a batch is planned to: `PACK_FILL` of its rows."""
        return int(self.rows * self.row_len * PACK_FILL)


@dataclass(frozen=True)
class Packed:
    """Proteins packed into rows of one length: each attends only to itself (`segments`: its number in
    its row, -1 on the row's padding) and its positions start again (`position_ids`)."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T) 1 = real token, 0 = padding at a row's end
    segments: torch.Tensor  # (B, T)
    position_ids: torch.Tensor  # (B, T)


def pack_rows(seqs: Sequence[np.ndarray], row_len: int, rows: int, pad_id: int, position_offset: int) -> Packed:
    """Pack `seqs` (each at most `row_len` tokens) into at least `rows` rows of `row_len` tokens
    (first-fit decreasing; more rows only when they do not fit). Positions count from
    `position_offset` (2 in RoBERTa, whose learned positions start after the padding index; 0 in BERT)."""
    layout = first_fit_rows([len(s) for s in seqs], row_len)
    shape = (max(rows, len(layout)), row_len)
    ids = torch.full(shape, pad_id, dtype=torch.long)
    mask = torch.zeros(shape, dtype=torch.long)
    segments = torch.full(shape, -1, dtype=torch.long)
    positions = torch.full(shape, max(position_offset - 1, 0), dtype=torch.long)
    for r, members in enumerate(layout):
        at = 0
        for segment, k in enumerate(members):
            n = len(seqs[k])
            ids[r, at : at + n] = torch.from_numpy(np.asarray(seqs[k], dtype=np.int64))
            mask[r, at : at + n] = 1
            segments[r, at : at + n] = segment
            positions[r, at : at + n] = torch.arange(position_offset, position_offset + n)
            at += n
    return Packed(ids, mask, segments, positions)


def block_diagonal_mask(segments: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) bool, True where query and key belong to the same protein of a packed row (SDPA's
    convention); built where `segments` lives, so the device never waits for the host."""
    return segments[:, None, :, None] == segments[:, None, None, :]


def plan_batches(
    lengths: np.ndarray, tokens_per_batch: int, rng, max_batch_size: int | None = None
) -> list[np.ndarray]:
    """`plan_batch_bounds` as a list of index arrays, one per batch, in shuffled order."""
    order, bounds, batch_order = plan_batch_bounds(lengths, tokens_per_batch, rng, max_batch_size)
    return [order[bounds[p] : bounds[p + 1]] for p in batch_order]


@dataclass(frozen=True)
class PaddingStats:
    real_tokens: int
    padded_tokens: int

    @property
    def waste_pct(self) -> float:
        return 100.0 * (1 - self.real_tokens / max(self.padded_tokens, 1))


def padding_stats(lengths: np.ndarray, batches: Sequence[np.ndarray]) -> PaddingStats:
    real = sum(int(lengths[b].sum()) for b in batches)
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    return PaddingStats(real, padded)


def windows(n_tokens: int, width: int, stride: int) -> list[int]:
    """Start tokens of windows of `width` covering n tokens, `stride` apart; the last one ends at the end."""
    if n_tokens <= width:
        return [0]
    starts = list(range(0, n_tokens - width, stride))
    return starts + [n_tokens - width]


def share_budget(lengths: Sequence[int], budget: int) -> list[int]:
    """Tokens each part keeps so that together they fit `budget` (water-filling): short parts stay
    whole and the rest share what is left equally, so no part gets less than budget // k unless it
    is shorter. With two parts this keeps at least half for each side."""
    keep = [0] * len(lengths)
    left, todo = budget, sorted(range(len(lengths)), key=lambda k: lengths[k])
    for n, k in enumerate(todo):
        keep[k] = min(int(lengths[k]), left // (len(todo) - n))
        left -= keep[k]
    return keep


def crop_parts(parts: Sequence[np.ndarray], budget: int, key: int) -> list[np.ndarray]:
    """`parts` cut to fit `budget` tokens together: each keeps its `share_budget` share, from a start drawn
    uniformly from the random `key` (one per example and epoch), so a crop is a pure function of the key."""
    keep = share_budget([len(p) for p in parts], budget)
    rng = np.random.default_rng(key)
    starts = [int(rng.integers(0, len(p) - k + 1)) for p, k in zip(parts, keep, strict=True)]
    return [p[s : s + k] for p, s, k in zip(parts, starts, keep, strict=True)]


def pad_batch(seqs: Sequence[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest: input_ids (B, T) long and attention_mask (B, T) long (0 on pads)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.from_numpy(np.asarray(s, dtype=np.int64))
        mask[row, : len(s)] = 1
    return ids, mask


@dataclass(frozen=True)
class MaskingVocab:
    """What MLM masking needs from a tokenizer: the mask id, which ids may be masked (residue tokens,
    never specials or pads) and what random replacements are drawn from (the residue tokens)."""

    mask_id: int
    maskable: torch.Tensor  # (vocab,) bool
    random_ids: torch.Tensor  # (n,) long

    @staticmethod
    def of(tokenizer) -> MaskingVocab:
        """From a `tokenization.ProteinTokenizer`."""
        residue = torch.from_numpy(np.asarray(tokenizer.residue_lengths) > 0)
        return MaskingVocab(int(tokenizer.mask_token_id), residue, torch.from_numpy(tokenizer.residue_token_ids))


def mask_for_mlm(
    input_ids: torch.Tensor, vocab: MaskingVocab, generator: torch.Generator, mlm_probability: float = 0.15
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT/RoBERTa dynamic masking: returns (masked input_ids, labels with -100 on unscored positions).

    `mlm_probability` of the residue tokens are selected (specials and pads never are); of those 80%
    become the mask token, 10% a random residue token and 10% stay unchanged.
    """
    maskable = vocab.maskable[input_ids]
    probs = torch.full(input_ids.shape, mlm_probability)
    selected = (torch.rand(input_ids.shape, generator=generator) < probs) & maskable
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
    roll = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (roll < 0.8)
    to_random = selected & (roll >= 0.8) & (roll < 0.9)
    random_tokens = vocab.random_ids[torch.randint(0, len(vocab.random_ids), input_ids.shape, generator=generator)]
    out = torch.where(to_mask, torch.full_like(input_ids, vocab.mask_id), input_ids)
    out = torch.where(to_random, random_tokens, out)
    return out, labels
