"""Objectives wrap an HF model and turn a batch into a loss; the model itself stays plain HF.

`MaskedLMObjective` runs the encoder on the whole batch but the LM head only on the ~15% masked
positions: the head is a (hidden x vocabulary) matmul per token, so scoring only the positions
that have a label saves most of it (the largest single cost of a small model with a 10k vocab).
DDP/FSDP wrap the objective, so gradients of every part are synchronised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from protlm.batching import block_diagonal_mask
from protlm.models.loading import mlm_head
from protlm.models.longformer import encoder_kwargs


class MaskedLMObjective(nn.Module):
    """forward(batch) -> (mean cross-entropy over masked tokens, number of masked tokens)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model  # e.g. RobertaForMaskedLM / LongformerForMaskedLM / EsmForMaskedLM / BertForMaskedLM

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor,
        masked_index: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
        **kwargs,
    ):
        """`masked_index`: the flat positions of `labels` != -100, when the caller knows them (the
        training batches do, from the host); else they are found here, which waits for the device.
        `segments` (packed rows, with their `position_ids` in kwargs): attention stays within a protein."""
        if segments is not None:
            attention_mask = block_diagonal_mask(segments)
        base = self.model.base_model  # the encoder (RobertaModel / LongformerModel / EsmModel / BertModel)
        extra = encoder_kwargs(self.model.config, input_ids)  # Longformer: global attention on <s>
        hidden = base(
            input_ids=input_ids, attention_mask=attention_mask, **extra, **kwargs
        ).last_hidden_state  # (B, T, H)
        if masked_index is None:
            masked_index = (labels.reshape(-1) != -100).nonzero().squeeze(1)
        n = masked_index.numel()
        picked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, masked_index)
        logits = mlm_head(self.model)(picked)  # (M, V), M = masked positions
        if n == 0:  # nothing masked in this batch: a zero loss that keeps the graph
            return hidden.sum() * 0.0, n
        return F.cross_entropy(logits.float(), labels.reshape(-1).index_select(0, masked_index)), n
