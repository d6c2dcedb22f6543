"""LoRA adapters (via `peft`) on any backbone: large models trained on small machines.

`add_lora` injects low-rank adapters into the named linear layers of a plain HF model, in place (the
model keeps its class, so the training loop, objectives and checkpoints see the same model), and
leaves only the adapters (plus the modules named in `train`, e.g. a task head) trainable. At the end
of training the adapter is written on its own in PEFT's format (`adapter/adapter_model.safetensors`
+ `adapter_config.json`, loadable with `peft.PeftModel.from_pretrained(base, dir)`) and merged into
the weights (W + B A x alpha / r), so every protlm command loads the result as an ordinary model.
"""

from __future__ import annotations

import json

from torch import nn

from protlm.errors import ProtlmError
from protlm.models.backbones import backbone


def parse_targets(text: str | None, model: nn.Module) -> tuple[str, ...]:
    """`--lora-targets` as module names; None: the model family's default (models/backbones.py)."""
    if text is None:
        return backbone(model.config).lora_targets
    targets = tuple(t.strip() for t in text.split(",") if t.strip())
    if not targets:
        raise ProtlmError("--lora-targets needs module names, e.g. query,value")
    return targets


def add_lora(model: nn.Module, rank: int, alpha: float | None = None, targets: tuple[str, ...] | None = None,
             train: tuple[str, ...] = (), base: str = "", seed: int = 0) -> nn.Module:  # fmt: skip
    """Inject rank-`rank` adapters into every linear layer whose name ends with a target; freeze the rest
    except parameters whose names start with a prefix in `train`. The adapters' random initialisation
    (A; B starts at zero) is drawn from `seed`, so a run is reproducible."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    if rank <= 0:
        raise ProtlmError(f"--lora-rank must be > 0, got {rank}")
    targets = backbone(model.config).lora_targets if targets is None else targets
    linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    unknown = [t for t in targets if t not in linear]
    if unknown:
        raise ProtlmError(f"--lora-targets {','.join(unknown)}: no such linear layer in {type(model).__name__} "
                          f"(it has {', '.join(sorted(linear))})")  # fmt: skip
    config = LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, target_modules=list(targets), lora_dropout=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, model)
    for name, p in model.named_parameters():
        p.requires_grad = "lora_" in name or name.startswith(train)
    model.protlm_lora = {"base": base, "rank": rank, "alpha": config.lora_alpha, "targets": list(targets)}
    return model


def configure(model: nn.Module, cfg, train: tuple[str, ...] = (), base: str = "") -> nn.Module:
    """Apply a training config's memory options to a model: gradient checkpointing, LoRA adapters."""
    if cfg.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora_rank:
        add_lora(model, cfg.lora_rank, cfg.lora_alpha, parse_targets(cfg.lora_targets, model), train, base, cfg.seed)
    return model


def head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Top-level names of a task model's parameters outside the encoder: its head, trained in full."""
    encoder = model.base_model_prefix + "."
    return tuple(sorted({n.split(".")[0] + "." for n, _ in model.named_parameters() if not n.startswith(encoder)}))


def has_lora(model: nn.Module) -> bool:
    return getattr(model, "protlm_lora", None) is not None


def adapter_files(model: nn.Module) -> dict[str, bytes | str]:
    """The adapter in PEFT's format, as files for the model directory: {relative path: content}."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    config = model.peft_config["default"].to_dict()
    config["base_model_name_or_path"] = model.protlm_lora["base"]
    config = {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}
    return {"adapter/adapter_model.safetensors": save(state),
            "adapter/adapter_config.json": json.dumps(config, indent=2, default=str) + "\n"}  # fmt: skip


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer and put the plain layer back, in place."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, module.get_base_layer())
    model.protlm_lora = None
    if hasattr(model, "peft_config"):
        del model.peft_config
    return model


def load_lora_checkpoint(model: nn.Module, checkpoint) -> None:
    """Weights of a checkpoint saved during LoRA training (adapters not yet merged) into `model`, which
    must have had `add_lora` with the same options."""
    from safetensors.torch import load_file

    state = {}
    for key, value in load_file(str(checkpoint / "model.safetensors")).items():
        if "*" in key:  # a buffer transformers saves under a pattern (ESM's rotary inv_freq), rebuilt on load
            continue
        # transformers saves some LayerNorms under the legacy names (ESM: gamma / beta) and renames on load
        key = key[: -len(".gamma")] + ".weight" if key.endswith(".gamma") else key
        state[key[: -len(".beta")] + ".bias" if key.endswith(".beta") else key] = value
    missing, unexpected = model.load_state_dict(state, strict=False)  # tied weights are saved once
    lora_missing = [k for k in missing if "lora_" in k]
    if unexpected or lora_missing:
        raise ProtlmError(f"{checkpoint}: not a checkpoint of this LoRA run (keys differ: "
                          f"{(unexpected or lora_missing)[:2]}); resume with the same --lora-* options")  # fmt: skip
