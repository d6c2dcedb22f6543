"""RoBERTa -> Longformer conversion, and the global-attention mask every Longformer call needs.

The paper extended its 512-token RoBERTa to 2,048 tokens with Longformer: position embeddings are
tiled from the trained positions out to the new length, and each layer's sliding-window attention
and global attention start from the RoBERTa attention weights (query/key/value copied to both the
local and the `*_global` projections). With a window that covers the whole input, the converted
model computes exactly what the RoBERTa computed (tested); longer inputs then train from there.
"""

from __future__ import annotations

from pathlib import Path

import torch

from protlm.errors import ProtlmError
from protlm.io.atomic import output_dir, write_json
from protlm.models.backbones import BACKBONES, backbone
from protlm.models.loading import load_safetensors_model
from protlm.models.size import check_model_size
from protlm.tokenization import load_tokenizer

INFO_FILE = "protlm_longformer.json"
POSITION_OFFSET = BACKBONES["longformer"].position_offset  # = RoBERTa's: the table is copied over


def encoder_kwargs(config, input_ids: torch.Tensor) -> dict:
    """Extra keyword arguments of the encoder call: Longformer's global attention, nothing for the others."""
    return backbone(config).encoder_kwargs(config, input_ids)


ATTENTION = ("auto", "longformer", "dense")


def dense_is_exact(max_length: int, window: int) -> bool:
    """A Longformer window of `window` tokens (`window / 2` each side) sees the whole input of up to
    `max_length` tokens when window >= 2 * max_length: sliding-window attention is then full attention."""
    return window >= 2 * max_length


def convert_roberta_to_longformer(
    source: str | Path,
    out: str | Path,
    max_length: int = 2048,
    window: int = 512,
    global_separators: bool = False,
    attention: str = "longformer",
) -> Path:
    """Write a long-input masked LM initialised from a trained RoBERTa MLM directory.

    `attention="longformer"`: `LongformerForMaskedLM` (sliding window + global `<s>`).
    `attention="dense"`: the RoBERTa itself with positions tiled to `max_length` (full SDPA attention).
    `attention="auto"`: dense where it is exact for the job (the window would cover every input, see
    `dense_is_exact`) because dense SDPA is faster on CPU at these lengths (bench/long_inputs.py);
    Longformer otherwise.
    """
    from transformers import AutoModelForMaskedLM, LongformerConfig, LongformerForMaskedLM

    source, out = Path(source), Path(out)
    if window <= 0 or window % 2:
        raise ProtlmError(f"--window must be a positive even number of tokens, got {window}")
    if max_length < 8:
        raise ProtlmError(f"--max-length must be >= 8 tokens, got {max_length}")
    if attention not in ATTENTION:
        raise ProtlmError(f"--attention must be one of {', '.join(ATTENTION)}, got {attention!r}")
    roberta = load_safetensors_model(AutoModelForMaskedLM, source)
    if not backbone(roberta.config, source).to_longformer:
        raise ProtlmError(f"{source}: expected a RoBERTa masked LM, found {roberta.config.model_type!r}")
    tokenizer = load_tokenizer(str(source))
    if attention == "dense" or (attention == "auto" and dense_is_exact(max_length, window)):
        return _extend_roberta(roberta, tokenizer, source, Path(out), max_length)
    rc = roberta.config
    config = LongformerConfig(
        vocab_size=rc.vocab_size, hidden_size=rc.hidden_size, num_hidden_layers=rc.num_hidden_layers,
        num_attention_heads=rc.num_attention_heads, intermediate_size=rc.intermediate_size,
        hidden_act=rc.hidden_act, hidden_dropout_prob=rc.hidden_dropout_prob,
        attention_probs_dropout_prob=rc.attention_probs_dropout_prob,
        max_position_embeddings=max_length + POSITION_OFFSET, type_vocab_size=rc.type_vocab_size,
        initializer_range=rc.initializer_range, layer_norm_eps=rc.layer_norm_eps,
        pad_token_id=rc.pad_token_id, bos_token_id=rc.bos_token_id, eos_token_id=rc.eos_token_id,
        sep_token_id=rc.eos_token_id, attention_window=[window] * rc.num_hidden_layers,
    )  # fmt: skip
    config.protlm_global_separators = global_separators
    check_model_size(config, f"{source} at --max-length {max_length}")
    torch.manual_seed(0)
    longformer = LongformerForMaskedLM(config)
    state = {}
    for key, value in roberta.state_dict().items():
        new = key.replace("roberta.", "longformer.", 1)
        state[new] = value
        if ".attention.self." in key and key.rsplit(".", 2)[-2] in ("query", "key", "value"):
            part, param = key.rsplit(".", 2)[-2:]
            state[new.replace(f".{part}.{param}", f".{part}_global.{param}")] = value.clone()
    old = roberta.roberta.embeddings.position_embeddings.weight.detach()  # (old_max + 2, d)
    state["longformer.embeddings.position_embeddings.weight"] = _tile_positions(old, max_length)
    state = {k: v for k, v in state.items() if not k.endswith("position_ids")}
    missing, unexpected = longformer.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise ProtlmError(f"conversion left weights unmatched: missing {missing[:3]}, unexpected {unexpected[:3]}")
    longformer.tie_weights()
    output_dir(out)
    longformer.save_pretrained(out, safe_serialization=True)
    tokenizer.hf.model_max_length = max_length
    tokenizer.save_pretrained(out)
    info = {"source": str(source), "max_length": max_length, "attention": "longformer", "window": window,
            "source_max_tokens": len(old) - POSITION_OFFSET, "global_separators": global_separators}  # fmt: skip
    write_json(out / INFO_FILE, info)
    return out


def _tile_positions(old: torch.Tensor, max_length: int) -> torch.Tensor:
    """(old_max + 2, d) -> (max_length + 2, d): RoBERTa's 2 offset rows, then the trained rows repeated."""
    trained = old[POSITION_OFFSET:]
    reps = -(-max_length // len(trained))
    return torch.cat([old[:POSITION_OFFSET], trained.repeat(reps, 1)[:max_length]], 0)


def _extend_roberta(roberta, tokenizer, source: Path, out: Path, max_length: int) -> Path:
    """The RoBERTa with `max_length` positions (tiled): dense attention over long inputs."""
    from transformers import RobertaForMaskedLM

    old = roberta.roberta.embeddings.position_embeddings.weight.detach()
    config = roberta.config
    config.max_position_embeddings = max_length + POSITION_OFFSET
    check_model_size(config, f"{source} at --max-length {max_length}")
    extended = RobertaForMaskedLM(config)
    state = {k: v for k, v in roberta.state_dict().items() if not k.endswith("position_ids")}
    state["roberta.embeddings.position_embeddings.weight"] = _tile_positions(old, max_length)
    extended.load_state_dict(state, strict=False)
    extended.tie_weights()
    output_dir(out)
    extended.save_pretrained(out, safe_serialization=True)
    tokenizer.hf.model_max_length = max_length
    tokenizer.save_pretrained(out)
    info = {"source": str(source), "max_length": max_length, "attention": "dense", "source_max_tokens": len(old) - 2}
    write_json(out / INFO_FILE, info)
    return out
