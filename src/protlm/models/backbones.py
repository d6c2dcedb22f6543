"""The backbone table: everything protlm knows about a model family, in one entry per family.

A family is an HF `model_type` (RoBERTa, Longformer, ESM-2, BERT / ProtBERT). Its entry says how the
encoder is called and loaded (HF class prefix, attention implementation, Longformer's global
attention), where learned positions start, which linear layers get LoRA adapters by default, whether
proteins may share a row (packing), whether its attention is a full map that `attention` / `contacts`
can read, whether it carries its own contact head, and whether it converts to a Longformer. The rest of
protlm asks this table (`backbone(config)`) and never compares `model_type` strings itself, so adding a
family is adding one entry here (docs/backbones.md, "Adding a family").

Tokenizers are not a per-family constant: `ProteinTokenizer` reads the special ids, the templates and
the residues per token off whatever tokenizer a model directory holds (tokenization.py). `tokenizer`
below names the files a family's checkpoints ship, for messages and docs.

This module sits at the bottom of `models` (it imports nothing else of protlm but errors).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backbone:
    name: str  # HF model_type
    title: str  # for people
    hf_prefix: str  # transformers' class prefix: {prefix}Model, {prefix}PreTrainedModel, {prefix}ForMaskedLM
    tokenizer: str  # what its checkpoints ship
    # Learned absolute positions start after the padding index in RoBERTa, Longformer and ESM (padding_idx + 1 = 2),
    # so N tokens need N + 2 rows; BERT's start at 0. ESM-2's rotary positions have no table, but its config states
    # the 1,024-token training length the same way.
    position_offset: int
    attention: str | None = "sdpa"  # attn_implementation on load (None: the family's own kernel)
    lora_targets: tuple[str, ...] = ("query", "value")  # default --lora-targets: the attention projections
    # Takes a 4-D block-diagonal mask and its own position ids, so proteins can share a row (pretrain --pack).
    packable: bool = False
    sliding_window: bool = False  # attention over a window (linear memory): its maps are not full maps
    global_attention: bool = False  # the encoder call takes a global_attention_mask (<s>, optionally </s>)
    rotary_positions: bool = False  # position_embedding_type "rotary" builds no position table (ESM-2)
    contact_head: bool = False  # checkpoints may carry a trained contact regression (ESM-2)
    to_longformer: bool = False  # `protlm longformer convert` starts from it
    task_model: str = ""  # name of protlm's task-model class for it (tasks/model.py builds the class)

    def encoder_kwargs(self, config, input_ids) -> dict:
        """Extra keyword arguments of an encoder call on `input_ids`: Longformer's global attention."""
        if not self.global_attention:
            return {}
        cls_id = config.bos_token_id if config.bos_token_id is not None else 0
        sep_id = config.sep_token_id if config.sep_token_id is not None else config.eos_token_id
        separators = getattr(config, "protlm_global_separators", False)
        return {"global_attention_mask": global_attention_mask(input_ids, cls_id, sep_id if separators else None)}

    def load_kwargs(self) -> dict:
        return {} if self.attention is None else {"attn_implementation": self.attention}


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone("roberta", "RoBERTa (protlm, paccmann_proteomics)", "Roberta", "protlm BPE tokenizer.json, or "
                 "byte-level BPE vocab.json + merges.txt", 2, packable=True, to_longformer=True,
                 task_model="ProteinTaskModel"),
        Backbone("longformer", "Longformer (converted from a RoBERTa)", "Longformer", "as the RoBERTa it came from",
                 2, attention=None, sliding_window=True, global_attention=True, task_model="LongformerTaskModel"),
        Backbone("esm", "ESM-2", "Esm", "EsmTokenizer vocab.txt (33 tokens, one per residue)", 2,
                 rotary_positions=True, contact_head=True, task_model="EsmTaskModel"),
        Backbone("bert", "BERT / ProtBERT", "Bert", "BertTokenizer vocab.txt (residues separated by spaces)", 0,
                 packable=True, task_model="BertTaskModel"),
    )
}  # fmt: skip


def backbone(config, where: object = "model") -> Backbone:
    """The table entry of an HF config (or its dict, or a model_type); ProtlmError naming `where` otherwise."""
    from protlm.errors import ProtlmError

    if isinstance(config, str):
        kind = config
    elif isinstance(config, dict):
        kind = config.get("model_type")
    else:
        kind = getattr(config, "model_type", None)
    entry = BACKBONES.get(kind) if isinstance(kind, str) else None
    if entry is None:
        shown = repr(kind)[:60] if isinstance(kind, str | None) else f"a {type(kind).__name__}"
        raise ProtlmError(f"{where}: protlm supports {', '.join(BACKBONES)} backbones, found {shown}")
    return entry


def global_attention_mask(input_ids, cls_id: int, sep_id: int | None = None):
    """(B, T) 1 on `<s>` (and on every `</s>` when `sep_id` is given): tokens that attend to and are
    attended by the whole input. Classification heads read `<s>`, so it must see everything."""
    mask = input_ids == cls_id
    if sep_id is not None:
        mask = mask | (input_ids == sep_id)
    return mask.long()
