"""Named model presets (YAML under configs/) and the masked-LM built from them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from huggingface_hub.errors import StrictDataclassFieldValidationError
from transformers import AutoConfig, AutoModelForMaskedLM, PreTrainedModel

from protlm.errors import ProtlmError
from protlm.io.structured import read_yaml, refuse_auto_map
from protlm.models.backbones import BACKBONES
from protlm.models.size import check_model_size

PRESETS = ("tiny", "roberta-small", "roberta-base", "esm-size")


def load_preset(name_or_path: str) -> dict:
    """A preset name (tiny, roberta-small, roberta-base, esm-size) or a YAML file -> config dict (no
    aliases, no `auto_map`: a preset never names code)."""
    path = Path(name_or_path)
    if name_or_path in PRESETS:
        cfg = read_yaml(path, (resources.files("protlm") / "configs" / f"{name_or_path}.yaml").read_text())
    elif path.suffix in (".yaml", ".yml") and path.is_file():
        cfg = read_yaml(path)
    else:
        raise ProtlmError(
            f"unknown model preset {name_or_path!r}; choose from {', '.join(PRESETS)} or give a YAML file"
        )
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        raise ProtlmError(f"{name_or_path}: a model preset is a YAML mapping with at least model_type")
    refuse_auto_map(cfg, name_or_path)
    return cfg


def build_mlm(preset: str | dict, tokenizer, seed: int = 0, **overrides) -> PreTrainedModel:
    """Randomly initialised masked LM from a preset, sized to the tokenizer, with SDPA attention."""
    import torch

    cfg = dict(load_preset(preset) if isinstance(preset, str) else preset)
    refuse_auto_map(cfg, preset if isinstance(preset, str) else "model preset")
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    model_type = cfg.pop("model_type")
    cfg.update(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.template.suffix[-1],
    )
    try:
        config = AutoConfig.for_model(model_type, **cfg)
    except (ValueError, TypeError, StrictDataclassFieldValidationError) as e:
        raise ProtlmError(f"invalid model config: {str(e).splitlines()[0]}") from None
    for name in (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
    ):
        value = getattr(config, name, None)
        if not isinstance(value, int) or value <= 0:
            raise ProtlmError(f"invalid model config: {name} must be a positive integer, got {value!r}")
    family = BACKBONES.get(config.model_type)  # an unknown family is refused by check_model_size, below
    if config.max_position_embeddings < 8 + (family.position_offset if family else 0):
        raise ProtlmError(
            f"invalid model config: max_position_embeddings {config.max_position_embeddings} is too small"
        )
    if config.hidden_size % config.num_attention_heads:
        raise ProtlmError(
            f"invalid model config: hidden_size {config.hidden_size} is not a multiple of "
            f"num_attention_heads {config.num_attention_heads}"
        )
    check_model_size(config, preset if isinstance(preset, str) else "model preset")
    torch.manual_seed(seed)
    return AutoModelForMaskedLM.from_config(config, attn_implementation="sdpa", trust_remote_code=False)
