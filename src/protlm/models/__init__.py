"""Models: HF RoBERTa (and later Longformer) built from YAML presets; no re-implemented backbone."""

from protlm.models.presets import PRESETS, build_mlm, load_preset, model_max_tokens

__all__ = ["PRESETS", "build_mlm", "load_preset", "model_max_tokens"]
