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

N_SPECIAL = 5  # <s>, <pad>, </s>, <unk>, <mask> are ids 0-4 in every protlm tokenizer
CLS, PAD, SEP, MASK = 0, 1, 2, 4


def plan_batches(
    lengths: np.ndarray, tokens_per_batch: int, rng: np.random.Generator, max_batch_size: int | None = None
) -> list[np.ndarray]:
    """Group example indices into batches whose padded size (count x longest) fits the budget.

    Examples are sorted by length (ties broken at random, so batches differ between epochs),
    packed greedily, and the batch order is shuffled. An example longer than the budget gets a
    batch of its own.
    """
    if len(lengths) == 0:
        return []
    order = np.lexsort((rng.random(len(lengths)), lengths))  # ascending length, random ties
    batches: list[np.ndarray] = []
    current: list[int] = []
    for idx in order:
        longest = int(lengths[idx])  # ascending order: the newcomer is the longest
        over_budget = (len(current) + 1) * longest > tokens_per_batch
        if current and (over_budget or (max_batch_size is not None and len(current) >= max_batch_size)):
            batches.append(np.asarray(current))
            current = []
        current.append(int(idx))
    batches.append(np.asarray(current))
    rng.shuffle(batches)
    return batches


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


def assemble(parts: Sequence[np.ndarray]) -> np.ndarray:
    """`<s> A </s>` for one protein; `<s> A </s></s> B </s>` for a pair; and so on for assemblies."""
    pieces: list[np.ndarray] = [np.array([CLS])]
    for k, part in enumerate(parts):
        if k:
            pieces.append(np.array([SEP]))
        pieces.append(np.asarray(part, dtype=np.int64))
        pieces.append(np.array([SEP]))
    return np.concatenate(pieces).astype(np.int64)


def assembled_length(part_lengths: Sequence[int]) -> int:
    """Length of `assemble` output for k parts: sum(L) + 1 `<s>` + (2k - 1) `</s>` = sum(L) + 2k."""
    return int(sum(part_lengths)) + 2 * len(part_lengths)


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


def pad_batch(seqs: Sequence[np.ndarray], pad_id: int = PAD) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest: input_ids (B, T) long and attention_mask (B, T) long (0 on pads)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.from_numpy(np.asarray(s, dtype=np.int64))
        mask[row, : len(s)] = 1
    return ids, mask


def mask_for_mlm(
    input_ids: torch.Tensor,
    vocab_size: int,
    generator: torch.Generator,
    mlm_probability: float = 0.15,
    mask_id: int = MASK,
    n_special: int = N_SPECIAL,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT/RoBERTa dynamic masking: returns (masked input_ids, labels with -100 on unscored positions).

    `mlm_probability` of the non-special, non-pad tokens are selected; of those 80% become
    `<mask>`, 10% a random non-special token and 10% stay unchanged.
    """
    maskable = input_ids >= n_special  # specials and pads are ids < n_special
    probs = torch.full(input_ids.shape, mlm_probability)
    selected = (torch.rand(input_ids.shape, generator=generator) < probs) & maskable
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
    roll = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (roll < 0.8)
    to_random = selected & (roll >= 0.8) & (roll < 0.9)
    random_tokens = torch.randint(n_special, vocab_size, input_ids.shape, generator=generator)
    out = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    out = torch.where(to_random, random_tokens, out)
    return out, labels
