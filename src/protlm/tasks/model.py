"""Task heads on the pre-trained encoder: sequence / pair classification and per-residue labels.

`task_class(family)` builds, from the backbone table (models/backbones.py), one HF `PreTrainedModel` per
family (encoder + one head: `ProteinTaskModel` for RoBERTa, `LongformerTaskModel`, `EsmTaskModel` for ESM-2,
`BertTaskModel` for ProtBERT), so fine-tuned models
save and load with `save_pretrained` / `from_pretrained` in safetensors, and loading a pre-trained
MLM directory fills the encoder and initialises the head. The head kind and pooling are stored
in the HF config (`protlm_head`, `protlm_pooling`).

- sequence / pair: pooled state -> dropout -> dense -> tanh -> dropout -> classes (RoBERTa's
  classification head). Pooling is the `<s>` state (the paper's choice for fine-tuning) or the
  mean over real tokens (better for a frozen encoder). Pairs use the `<s> A </s></s> B </s>` input.
- residue: each residue takes the state of the token that contains it, plus learned embeddings of
  its amino acid and of its offset inside the token; a width-5 convolution over residues then lets
  neighbouring residues inside and across tokens differ, and a linear layer gives the classes.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from protlm.models.backbones import BACKBONES, backbone
from protlm.tasks.align import MAX_OFFSET, N_AA
from protlm.tasks.kinds import get_kind


class _TaskHeads:
    """The heads, shared by every family's task model (`self.base_model` is the encoder)."""

    def _init_heads(self, config) -> None:
        self.num_labels = config.num_labels
        self.head_kind = getattr(config, "protlm_head", "sequence")
        # the task kind owns the loss and the output scale (models written before kinds: the head says which)
        self.kind = get_kind(getattr(config, "protlm_kind", None) or self.head_kind)
        self.pooling = getattr(config, "protlm_pooling", "cls")
        d = config.hidden_size
        drop = (
            config.classifier_dropout
            if getattr(config, "classifier_dropout", None) is not None
            else config.hidden_dropout_prob
        )
        self.dropout = nn.Dropout(drop)
        if self.kind.per_residue:
            self.aa_embed = nn.Embedding(N_AA, d, padding_idx=0)
            self.offset_embed = nn.Embedding(MAX_OFFSET, d)
            self.residue_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
            self.residue_conv = nn.Conv1d(d, d, kernel_size=5, padding=2)
        else:
            # Pooled states of a small or barely trained encoder differ little between proteins (a
            # shared direction dominates): standardise them across examples, as for linear probes
            # (running statistics at inference, so a prediction never depends on its batch).
            self.pool_norm = nn.BatchNorm1d(d, affine=False)
            self.dense = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, config.num_labels)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        residue_index: torch.Tensor | None = None,
        residue_offset: torch.Tensor | None = None,
        residue_aa: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        class_weights: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        """logits (B, C) for sequence/pair heads, (B, R, C) for the residue head (a regression's value in the
        data's units); the task kind's loss when labels are given."""
        extra = backbone(self.config).encoder_kwargs(self.config, input_ids)  # Longformer: global attention on <s>
        h = self.base_model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state  # (B, T, d)
        if self.kind.per_residue:
            logits = self._residue_logits(h, residue_index, residue_offset, residue_aa)
        else:
            if self.pooling == "mean":
                m = attention_mask.unsqueeze(-1).to(h.dtype)
                pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
            else:
                pooled = h[:, 0]
            x = torch.tanh(self.dense(self.dropout(self._standardise(pooled))))
            logits = self.out_proj(self.dropout(x))
        logits = self.kind.scale_output(logits, self.config)
        loss = None if labels is None else self.kind.loss(logits, labels, class_weights, self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def _standardise(self, pooled: torch.Tensor) -> torch.Tensor:
        norm = self.pool_norm
        if self.training and pooled.shape[0] > 1:
            return norm(pooled.float()).to(pooled.dtype)
        # inference, or a training batch of one protein: the running statistics
        out = nn.functional.batch_norm(
            pooled.float(), norm.running_mean, norm.running_var, training=False, eps=norm.eps
        )
        return out.to(pooled.dtype)

    def _residue_logits(self, h, index, offset, aa) -> torch.Tensor:
        # h (B, T, d) -> per residue (B, R, d): the state of its token + identity + offset in the token
        gathered = torch.gather(h, 1, index.unsqueeze(-1).expand(-1, -1, h.size(-1)))
        x = self.residue_norm(gathered + self.aa_embed(aa) + self.offset_embed(offset))
        x = x * (aa > 0).unsqueeze(-1).to(x.dtype)  # zero padding residues before the convolution
        x = x + nn.functional.gelu(self.residue_conv(x.transpose(1, 2)).transpose(1, 2))  # (B, R, d)
        return self.out_proj(self.dropout(x))  # (B, R, C)


@functools.cache
def task_class(family: str) -> type:
    """protlm's task model for a backbone family: its HF `{prefix}PreTrainedModel` with the encoder (no pooling
    layer) under the family's own attribute name, plus the task heads. Built from the backbone table, so a new
    family needs no class here; saved and loaded as any HF model (config, safetensors weights)."""
    import transformers

    b = BACKBONES[family]
    pretrained = getattr(transformers, f"{b.hf_prefix}PreTrainedModel")
    encoder = getattr(transformers, f"{b.hf_prefix}Model")

    def __init__(self, config):
        pretrained.__init__(self, config)
        setattr(self, pretrained.base_model_prefix, encoder(config, add_pooling_layer=False))
        self._init_heads(config)
        self.post_init()

    doc = f"{b.title} encoder + protlm's task heads."
    return type(b.task_model, (_TaskHeads, pretrained), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


def task_model_class(config) -> type:
    """The task-model class for an encoder config."""
    return task_class(backbone(config, "task model").name)


ProteinTaskModel = task_class("roberta")  # the paper's RoBERTa + heads, by the name its checkpoints record
