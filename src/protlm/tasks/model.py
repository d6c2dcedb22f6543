"""Task heads on the pre-trained encoder: sequence / pair classification and per-residue labels.

`ProteinTaskModel` (RoBERTa), `LongformerTaskModel`, `EsmTaskModel` (ESM-2) and `BertTaskModel` (ProtBERT) are HF
`PreTrainedModel`s (encoder + one head) so fine-tuned models
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

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.bert.modeling_bert import BertModel, BertPreTrainedModel
from transformers.models.esm.modeling_esm import EsmModel, EsmPreTrainedModel
from transformers.models.longformer.modeling_longformer import LongformerModel, LongformerPreTrainedModel
from transformers.models.roberta.modeling_roberta import RobertaModel, RobertaPreTrainedModel

from protlm.errors import ProtlmError
from protlm.models.longformer import encoder_kwargs
from protlm.tasks.align import MAX_OFFSET, N_AA


class _TaskHeads:
    """The heads, shared by the RoBERTa and the Longformer task models (`self.encoder` is the base model)."""

    def _init_heads(self, config) -> None:
        self.num_labels = config.num_labels
        self.head_kind = getattr(config, "protlm_head", "sequence")
        self.pooling = getattr(config, "protlm_pooling", "cls")
        d = config.hidden_size
        drop = (
            config.classifier_dropout
            if getattr(config, "classifier_dropout", None) is not None
            else config.hidden_dropout_prob
        )
        self.dropout = nn.Dropout(drop)
        if self.head_kind == "residue":
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
        """logits (B, C) for sequence/pair heads, (B, R, C) for the residue head; loss when labels given."""
        extra = encoder_kwargs(self.config, input_ids)  # Longformer: global attention on <s>
        h = self.base_model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state  # (B, T, d)
        if self.head_kind == "residue":
            logits = self._residue_logits(h, residue_index, residue_offset, residue_aa)
        else:
            if self.pooling == "mean":
                m = attention_mask.unsqueeze(-1).to(h.dtype)
                pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
            else:
                pooled = h[:, 0]
            x = torch.tanh(self.dense(self.dropout(self._standardise(pooled))))
            logits = self.out_proj(self.dropout(x))
        loss = None
        if labels is not None:
            weight = class_weights.to(logits.dtype) if class_weights is not None else None
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, self.num_labels).float(), labels.reshape(-1), weight=weight, ignore_index=-100
            )
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


class ProteinTaskModel(_TaskHeads, RobertaPreTrainedModel):
    """RoBERTa encoder + task head."""

    def __init__(self, config):
        super().__init__(config)
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self._init_heads(config)
        self.post_init()


class LongformerTaskModel(_TaskHeads, LongformerPreTrainedModel):
    """Longformer encoder + the same task heads (global attention on `<s>`)."""

    def __init__(self, config):
        super().__init__(config)
        self.longformer = LongformerModel(config, add_pooling_layer=False)
        self._init_heads(config)
        self.post_init()


class EsmTaskModel(_TaskHeads, EsmPreTrainedModel):
    """ESM-2 encoder + the same task heads (`<cls> A <eos>` inputs)."""

    def __init__(self, config):
        super().__init__(config)
        self.esm = EsmModel(config, add_pooling_layer=False)
        self._init_heads(config)
        self.post_init()


class BertTaskModel(_TaskHeads, BertPreTrainedModel):
    """BERT encoder (ProtBERT) + the same task heads (`[CLS] A [SEP]` inputs)."""

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self._init_heads(config)
        self.post_init()


TASK_MODELS = {"roberta": ProteinTaskModel, "longformer": LongformerTaskModel, "esm": EsmTaskModel,
               "bert": BertTaskModel}  # fmt: skip


def task_model_class(config) -> type:
    """The task-model class for an encoder config."""
    cls = TASK_MODELS.get(getattr(config, "model_type", None))
    if cls is None:
        raise ProtlmError(f"no task model for model_type {config.model_type!r}; supported: {', '.join(TASK_MODELS)}")
    return cls
