"""The JSON files of an HF model or tokenizer directory, read with one-line errors, and the rule that
such a directory never brings its own code.

A `config.json` or `tokenizer_config.json` with an `auto_map` names Python files in the directory (or
on the Hub) that transformers would import if asked to trust them. protlm never does: such a
directory is refused before any HF loader opens it, and every loader also passes
`trust_remote_code=False`, so an interactive "run the custom code? [y/N]" prompt cannot appear.
"""

from __future__ import annotations

import re
from pathlib import Path

from protlm.errors import ProtlmError
from protlm.io.structured import read_json_object, refuse_auto_map

# Files whose `auto_map` transformers follows (configs, tokenizers, processors).
CODE_BEARING = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")


def refuse_remote_code(directory: str | Path, read: dict[str, dict] | None = None) -> dict | None:
    """ProtlmError when any code-bearing JSON file of `directory` has an `auto_map` (custom code), or its
    root adapter is not one protlm would write (`check_adapter`). Files are read once: each one read is
    put in `read` (name -> object), for the caller to use; the root adapter config is returned."""
    directory = Path(directory)
    read = {} if read is None else read
    for name in CODE_BEARING:
        f = directory / name
        if f.is_file():
            read[name] = read_json_object(f)
            refuse_auto_map(read[name], f)
    return check_adapter(directory)


# --------------------------------------------------------------------------------------------- adapters
# transformers applies a PEFT adapter it finds at a model directory's root (`adapter_config.json`): peft
# then reads the weights (a pickled `adapter_model.bin` when no safetensors is there), matches
# `target_modules` / `rank_pattern` / `exclude_modules` as regular expressions, may import the module
# named by `auto_mapping` / `megatron_core`, and older transformers load the base model the config names.
# So only adapters shaped like the ones protlm writes are accepted: LoRA, safetensors weights,
# `target_modules` a list of plain module names, every other option at its default.
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z0-9_]{1,63}){0,7}")
# Options protlm sets (validated here); every other option must be at peft's default (or unset / empty).
_ADAPTER_CHECKS = {
    "peft_type": lambda v: v == "LORA",
    "target_modules": lambda v: _plain_names(v, allow_empty=False),
    "modules_to_save": lambda v: v is None or _plain_names(v, allow_empty=True),
    "r": lambda v: type(v) is int and 0 < v <= 4096,
    "lora_alpha": lambda v: type(v) in (int, float) and 0 < v <= 1e6,
    "lora_dropout": lambda v: type(v) in (int, float) and 0 <= v < 1,
    "base_model_name_or_path": lambda v: v is None or (type(v) is str and len(v) <= 4096),
    "inference_mode": lambda v: type(v) is bool,
    "task_type": lambda v: v is None or (type(v) is str and _PLAIN_NAME.fullmatch(v) is not None),
    "peft_version": lambda v: v is None or (type(v) is str and len(v) <= 64),
    "bias": lambda v: v == "none",
    "fan_in_fan_out": lambda v: type(v) is bool,
    "init_lora_weights": lambda v: type(v) is bool,
    "use_rslora": lambda v: type(v) is bool,
}


def _plain_names(value, allow_empty: bool) -> bool:
    return (
        isinstance(value, list)
        and (allow_empty or 0 < len(value))
        and len(value) <= 256
        and all(type(n) is str and _PLAIN_NAME.fullmatch(n) for n in value)
    )


def _peft_defaults() -> dict:
    """peft's LoraConfig defaults as they read back from JSON (sets as sorted lists, enums as strings)."""
    from peft import LoraConfig

    def as_json(v):
        if isinstance(v, set | frozenset):
            return sorted(v)
        return v if v is None or type(v) in (bool, int, float, str, list, dict) else str(v)

    return {k: as_json(v) for k, v in LoraConfig().to_dict().items()}


def check_adapter(directory: str | Path) -> dict | None:
    """The root adapter config of `directory` when it is one protlm would write (see above), None when
    there is none; ProtlmError naming the file and the option otherwise."""
    directory = Path(directory)
    f = directory / ADAPTER_CONFIG
    if not f.is_file():
        return None
    config = read_json_object(f, limit=1 << 20)
    refuse_auto_map(config, f)
    defaults = _peft_defaults()
    for key, value in config.items():
        check = _ADAPTER_CHECKS.get(key)
        if check is not None:
            ok = check(value)
        else:  # anything else protlm never sets: peft's default, or unset
            ok = value == defaults.get(key, None) or value in (None, False, {}, [])
        if not ok:
            raise ProtlmError(
                f"{f}: adapter option {key[:60]!r} is not one protlm writes (LoRA, target_modules as a list "
                "of module names, other options at their defaults); refusing to load this adapter"
            )
    if "target_modules" not in config or config.get("peft_type") != "LORA":
        raise ProtlmError(f"{f}: not a LoRA adapter with target_modules; protlm loads only LoRA adapters")
    pickled = sorted(p.name for p in directory.glob("adapter_model*") if p.name != ADAPTER_WEIGHTS)
    if pickled or not (directory / ADAPTER_WEIGHTS).is_file():
        raise ProtlmError(
            f"{f}: an adapter loads from {ADAPTER_WEIGHTS} only (found {', '.join(pickled) or 'no weights'}); "
            "pickled weights are never opened"
        )
    return config
