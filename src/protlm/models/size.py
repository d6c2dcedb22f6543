"""How much memory a model config asks for, checked before anything is allocated.

A `config.json` or a preset YAML is a few numbers; `hidden_size: 65536`, `num_hidden_layers: 1000` or
`vocab_size: 10000000` in one asks transformers for terabytes, which it allocates until the machine
dies. `check_model_size` estimates the parameter memory of the encoder families protlm builds (BERT,
RoBERTa, ESM, Longformer: the same layer layout) and refuses, in one line naming the config, what is
over the memory available now (`MemAvailable`, and the cgroup's limit when one is set; a CUDA device's
free memory when the model goes there; `device.available_memory`) or over `MAX_MODEL_BYTES`.

The estimate (tested against real parameter counts within 10%):
- embeddings: vocab x h + positions x h (none for rotary) + token types x h;
- per layer: 4 h^2 (query, key, value, output) + 2 h x intermediate + biases and norms; Longformer
  adds 3 h^2 for its global query, key and value;
- the MLM head: h^2 + vocab (its decoder shares the embedding matrix unless `tie_word_embeddings` is
  false, then vocab x h more);
- plus `LAYER_OVERHEAD` bytes per layer for the module objects themselves (a million tiny layers cost
  time and memory though they hold few parameters).
"""

from __future__ import annotations

from pathlib import Path

from protlm.device import available_memory
from protlm.errors import ProtlmError
from protlm.models.backbones import BACKBONES

MAX_MODEL_BYTES = 128 << 30  # 128 GiB of parameters: ESM-2 15B in float32 is 60 GB
MAX_WINDOW = 1 << 14  # Longformer attention window accepted whatever the positions (protlm's default: 512)
LAYER_OVERHEAD = 64 << 10  # bytes per layer for the torch module objects, whatever their size
_HALF = {"float16", "bfloat16", "torch.float16", "torch.bfloat16"}


def _field(config, name: str, default=0):
    value = config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)
    return value


def _count(config, name: str, default: int = 0) -> int:
    """A non-negative integer field (anything else counts as `default`: transformers refuses it later)."""
    value = _field(config, name, default)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def estimate_parameters(config) -> int:
    """Parameters of the masked LM a config (an HF config or its dict) describes."""
    v, h = _count(config, "vocab_size"), _count(config, "hidden_size")
    n_layers, inter = _count(config, "num_hidden_layers"), _count(config, "intermediate_size", 4 * h)
    # only ESM builds no position table for rotary positions (RoBERTa / BERT allocate it whatever the type)
    family = BACKBONES.get(_field(config, "model_type", None))
    rotary = _field(config, "position_embedding_type", "absolute") == "rotary" and family and family.rotary_positions
    positions = 0 if rotary else _count(config, "max_position_embeddings")
    embeddings = (v + positions + _count(config, "type_vocab_size")) * h + 2 * h
    layer = 4 * h * h + 4 * h + 2 * h * inter + inter + h + 4 * h  # attention, feed-forward, two norms
    if family and family.global_attention:
        layer += 3 * h * h + 3 * h  # global query, key, value
    head = h * h + h + 2 * h + v + (0 if _field(config, "tie_word_embeddings", True) else v * h)
    return embeddings + n_layers * layer + head


def bytes_per_parameter(config) -> int:
    if isinstance(config, dict):  # a config.json: either spelling
        dtype = config.get("dtype") or config.get("torch_dtype")
    else:  # an HF config: `torch_dtype` is a deprecated alias that warns
        dtype = getattr(config, "dtype", None)
    return 2 if str(dtype) in _HALF else 4


DIMENSIONS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "max_position_embeddings")  # fmt: skip


def check_dimensions(config, where: str | Path) -> None:
    """ProtlmError naming `where` unless the config is of a family protlm supports and its sizes are
    positive integers that fit together (heads divide the width; Longformer's windows are even and
    within the positions)."""
    kind = _field(config, "model_type", None)
    if kind is not None and kind not in BACKBONES:  # another family's sizes follow rules estimated nowhere here
        raise ProtlmError(f"{where}: model_type must be one of {', '.join(BACKBONES)}, found {_short(kind)}")
    given = [n for n in DIMENSIONS if not (isinstance(config, dict) and n not in config)]  # else HF's default
    for name in given:
        value = _field(config, name, None)
        if type(value) is not int or value <= 0:
            raise ProtlmError(f"{where}: {name} must be a positive integer, found {_short(value)}")
    if {"hidden_size", "num_attention_heads"} <= set(given) and \
            _field(config, "hidden_size") % _field(config, "num_attention_heads"):  # fmt: skip
        raise ProtlmError(f"{where}: hidden_size {_field(config, 'hidden_size')} is not a multiple of "
                          f"num_attention_heads {_field(config, 'num_attention_heads')}")  # fmt: skip
    if kind in BACKBONES and BACKBONES[kind].sliding_window and _field(config, "attention_window", None) is not None:
        windows = _field(config, "attention_window", None)
        windows = windows if isinstance(windows, list) else [windows]
        # inputs are padded to a multiple of the window: a 2**28 window is a 2**28-token forward pass
        most = max(_count(config, "max_position_embeddings", 0), MAX_WINDOW)
        if not windows or any(type(w) is not int or w < 2 or w % 2 or w > most for w in windows):
            raise ProtlmError(f"{where}: attention_window must be even sizes from 2 to {most:,} (the larger of "
                              f"max_position_embeddings and {MAX_WINDOW:,}), one or one per layer")  # fmt: skip


def _short(value) -> str:
    return repr(value) if type(value) in (int, float, bool, type(None)) or (type(value) is str and len(value) < 40) \
        else type(value).__name__  # fmt: skip


def check_model_size(config, where: str | Path, device=None) -> int:
    """Estimated parameter bytes of `config`; ProtlmError naming `where` when its sizes are not positive
    integers that fit together (`check_dimensions`), or when over what this machine (or `device`) has
    free or over `MAX_MODEL_BYTES`. Call it before building or loading the model."""
    check_dimensions(config, where)
    need = (
        estimate_parameters(config) * bytes_per_parameter(config) + _count(config, "num_hidden_layers") * LAYER_OVERHEAD
    )
    free = available_memory(device)
    limit, what = (MAX_MODEL_BYTES, "protlm's limit")
    if free is not None and free < limit:
        limit, what = free, f"the memory available{' on ' + str(device) if device else ''}"
    if need > limit:
        raise ProtlmError(
            f"{where}: the model would need about {_gib(need)} for its parameters, over {what} ({_gib(limit)}); "
            "check hidden_size, num_hidden_layers, intermediate_size, vocab_size and max_position_embeddings"
        )
    return need


def _gib(n: int) -> str:
    return f"{n / (1 << 30):,.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):,.1f} MiB"
