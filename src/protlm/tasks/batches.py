"""Task examples -> model batches: windows over long proteins, pair cropping, residue gathering.

Long proteins are never an error. A single protein longer than the model is cut into windows of
the model's length (stride half a window): training sees one random window per epoch, evaluation
scores every window and averages the logits of the windows covering each residue (residue tasks)
or all windows (sequence tasks). A pair or assembly that is too long is cropped part by part
(`share_budget`: short proteins stay whole, long ones share the rest equally, so each of k parts
keeps at least 1/k of the budget unless it is shorter); crops are random in training and the start
of each protein in evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from protlm.align import residue_map
from protlm.batching import pad_batch, plan_batches, share_budget, windows
from protlm.tasks.align import MAX_OFFSET, aa_codes
from protlm.tasks.data import IGNORE, Example
from protlm.tasks.kinds import Kind, get_kind
from protlm.tokenized import TokenizedSet

Item = tuple[int, tuple[int, ...]]  # (example index, start token of each part)


@dataclass
class TaskBatch:
    """Tensors of one batch; residue fields are None for sequence and multi-protein tasks."""

    examples: np.ndarray  # (B,) example indices
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    # (B,) classes or numbers, (B, C) 0/1 label sets, or (B, R) with -100 on padding / unscored residues
    labels: torch.Tensor
    residue_index: torch.Tensor | None = None  # (B, R) position in input_ids of each residue's token
    residue_offset: torch.Tensor | None = None  # (B, R) offset of the residue inside its token
    residue_aa: torch.Tensor | None = None  # (B, R) amino-acid code, 0 on padding
    residue_start: np.ndarray | None = None  # (B,) first residue of the window in its protein
    n_tokens: int = 0
    n_padded: int = 0

    def fields(self) -> dict[str, torch.Tensor]:
        out = {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "labels": self.labels}
        if self.residue_index is not None:
            out |= {
                "residue_index": self.residue_index,
                "residue_offset": self.residue_offset,
                "residue_aa": self.residue_aa,
            }
        return out


@dataclass
class TaskSet:
    """One split of a task, tokenized: protein `parts[i][j]` of example i lives in `tset`.

    Sequence and residue examples have one part; pair examples two; assemblies any number >= 2
    (the count may differ between examples).
    """

    kind: Kind  # what the task predicts (tasks/kinds.py): its labels' collation, residue fields or not
    examples: list[Example]
    tset: TokenizedSet
    parts: list[tuple[int, ...]]  # protein indices into tset, per example
    max_tokens: int
    tokenizer: Any  # tokenization.ProteinTokenizer: template, pad id, residues per token

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def content(self) -> int:
        """Content tokens per window of a single protein (the template's specials take the rest)."""
        return self.max_tokens - self.tokenizer.template.overhead(1)

    def windows(self, i: int) -> list[int]:
        """Start tokens of the evaluation windows of single-protein example i (stride half a window)."""
        return windows(int(self.tset.lengths[self.parts[i][0]]), self.content, max(1, self.content // 2))

    def _lengths(self, i: int) -> list[int]:
        return [int(self.tset.lengths[p]) for p in self.parts[i]]

    def _keep(self, lengths: list[int]) -> list[int]:
        """Tokens each part of a multi-protein example keeps (the template adds its specials)."""
        return share_budget(lengths, self.max_tokens - self.tokenizer.template.overhead(len(lengths)))

    def items(self, rng: np.random.Generator | None) -> list[Item]:
        """Training items (one random window / crop per example) with rng; all eval windows without."""
        out: list[Item] = []
        for i in range(len(self.examples)):
            lengths = self._lengths(i)
            if len(lengths) > 1:
                keep = self._keep(lengths)
                if rng is None:
                    out.append((i, (0,) * len(lengths)))
                else:
                    out.append((i, tuple(int(rng.integers(0, n - k + 1)) for n, k in zip(lengths, keep, strict=True))))
            elif rng is None:
                out.extend((i, (s,)) for s in self.windows(i))
            else:
                out.append((i, (int(rng.integers(0, max(0, lengths[0] - self.content) + 1)),)))
        return out

    def item_length(self, item: Item) -> int:
        lengths = self._lengths(item[0])
        if len(lengths) > 1:
            return self.tokenizer.template.length(self._keep(lengths))
        return self.tokenizer.template.length([min(lengths[0], self.content)])

    def plan(
        self, items: list[Item], tokens_per_batch: int, rng: np.random.Generator, max_batch: int
    ) -> list[list[Item]]:
        lengths = np.array([self.item_length(it) for it in items], dtype=np.int64)
        return [[items[k] for k in b] for b in plan_batches(lengths, tokens_per_batch, rng, max_batch)]

    def make_batch(self, items: list[Item]) -> TaskBatch:
        seqs, labels, res = [], [], []
        for i, starts in items:
            ex = self.examples[i]
            tokens = [self.tset.get(p) for p in self.parts[i]]
            if len(tokens) > 1:
                keep = self._keep([len(t) for t in tokens])
                seqs.append(
                    self.tokenizer.assemble([t[s : s + k] for t, s, k in zip(tokens, starts, keep, strict=True)])
                )
            else:
                window = tokens[0][starts[0] : starts[0] + self.content]
                seqs.append(self.tokenizer.assemble([window]))
                if self.kind.per_residue:
                    res.append(self._residues(ex, tokens[0], starts[0], len(window)))
            labels.append(ex.label)
        ids, mask = pad_batch(seqs, self.tokenizer.pad_token_id)
        label_tensor = None if self.kind.per_residue else self.kind.label_tensor(labels)
        batch = TaskBatch(np.array([it[0] for it in items]), ids, mask, label_tensor)
        batch.n_tokens, batch.n_padded = int(mask.sum()), mask.numel()
        if self.kind.per_residue:
            self._residue_fields(batch, res)
        return batch

    def _residues(self, ex: Example, tokens: np.ndarray, start: int, n_window: int):
        """Residues covered by tokens [start, start + n_window) and where their tokens sit in the input."""
        seq = ex.parts[0]
        token_of, offset = residue_map(tokens, self.tokenizer.residue_lengths, len(seq))
        r0 = int(np.searchsorted(token_of, start, side="left"))
        r1 = int(np.searchsorted(token_of, start + n_window, side="left"))
        index = token_of[r0:r1] - start + self.tokenizer.template.start  # after the prefix (<s>)
        label = np.asarray(ex.label[r0:r1], dtype=np.int64)
        return r0, index, np.minimum(offset[r0:r1], MAX_OFFSET - 1), aa_codes(seq[r0:r1]), label

    @staticmethod
    def _residue_fields(batch: TaskBatch, res: list) -> None:
        width = max(len(r[1]) for r in res)
        shape = (len(res), width)
        index, offset, aa = (torch.zeros(shape, dtype=torch.long) for _ in range(3))
        labels = torch.full(shape, -100, dtype=torch.long)
        for row, (_, idx, off, codes, lab) in enumerate(res):
            n = len(idx)
            index[row, :n] = torch.from_numpy(idx)
            offset[row, :n] = torch.from_numpy(off)
            aa[row, :n] = torch.from_numpy(codes)
            labels[row, :n] = torch.from_numpy(np.where(lab == IGNORE, -100, lab))
        batch.residue_index, batch.residue_offset, batch.residue_aa, batch.labels = index, offset, aa, labels
        batch.residue_start = np.array([r[0] for r in res], dtype=np.int64)


def build_taskset(kind: str | Kind, examples: list[Example], tokenizer, max_tokens: int, cache_dir=None) -> TaskSet:
    """Tokenize the distinct proteins of `examples` once (cached) and index the parts; `kind` a task kind or its name."""
    from protlm.tokenized import cached_tokenize

    index: dict[str, int] = {}
    for ex in examples:
        for seq in ex.parts:
            index.setdefault(seq, len(index))
    seqs = list(index)
    tset = cached_tokenize(tokenizer, [f"p{k}" for k in range(len(seqs))], seqs, cache_dir)
    parts = [tuple(index[s] for s in ex.parts) for ex in examples]
    return TaskSet(get_kind(kind), examples, tset, parts, max_tokens, tokenizer)
