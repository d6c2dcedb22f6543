"""Models: HF backbones (RoBERTa, Longformer, ESM-2, BERT) loaded in one place (`loading`), presets."""

from protlm.models.loading import model_max_tokens, open_model
from protlm.models.presets import PRESETS, build_mlm, load_preset

__all__ = ["PRESETS", "build_mlm", "load_preset", "model_max_tokens", "open_model"]
