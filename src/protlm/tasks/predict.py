"""Prediction with a task model: windows scored independently, logits averaged per example or residue."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from protlm.tasks.batches import TaskSet


@torch.inference_mode()
def predict_logits(model: nn.Module, ts: TaskSet, tokens_per_batch: int, batch_size: int) -> list[np.ndarray]:
    """Head outputs per example: (C,) for sequence / pair tasks, (n_residues, C) for residue tasks.

    Every evaluation window is scored; logits are averaged over the windows covering an example
    (sequence tasks) or a residue (residue tasks). Batch composition never changes a prediction:
    padding is masked and each window is scored independently.
    """
    model.eval()
    device = next(model.parameters()).device
    n_classes = model.config.num_labels
    items = ts.items(None)
    plan = ts.plan(items, tokens_per_batch, np.random.default_rng(0), batch_size)
    if ts.kind.per_residue:
        sums = [np.zeros((len(ex.parts[0]), n_classes)) for ex in ts.examples]
        counts = [np.zeros(len(ex.parts[0])) for ex in ts.examples]
    else:
        sums, counts = list(np.zeros((len(ts), n_classes))), list(np.zeros(len(ts)))
    for batch_items in plan:
        batch = ts.make_batch(batch_items)
        fields = {k: v.to(device) for k, v in batch.fields().items() if k != "labels"}
        logits = model(**fields).logits.float().cpu().numpy()
        for row, i in enumerate(batch.examples):
            if ts.kind.per_residue:
                n = int((batch.residue_aa[row] > 0).sum())
                r0 = int(batch.residue_start[row])
                sums[i][r0 : r0 + n] += logits[row, :n]
                counts[i][r0 : r0 + n] += 1
            else:
                sums[i] += logits[row]
                counts[i] += 1
    if ts.kind.per_residue:
        return [s / np.maximum(c, 1)[:, None] for s, c in zip(sums, counts, strict=True)]
    return [s / max(c, 1) for s, c in zip(sums, counts, strict=True)]


def predict(
    model: nn.Module, ts: TaskSet, tokens_per_batch: int, batch_size: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(y, outputs, ids) as the task kind reports them: one row per example, or per scored residue."""
    logits = predict_logits(model, ts, tokens_per_batch, batch_size)
    return ts.kind.collect(ts.examples, logits, model.config.num_labels)
