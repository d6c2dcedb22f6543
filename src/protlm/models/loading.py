"""Loading model directories: configs and weights, safetensors only, no remote code.

Every command that opens a model directory goes through here, so the safety rules hold in one place:
- a directory whose JSON names custom code (`auto_map`) is refused, and `trust_remote_code=False`
  is passed to every HF loader;
- weights load from `model.safetensors` only: a pickled `pytorch_model.bin` is never opened
  (unpickling can run code);
- a malformed `config.json` (bad JSON, unknown `model_type`) is a one-line error naming the file.
"""

from __future__ import annotations

from pathlib import Path

from protlm.errors import ProtlmError
from protlm.io.hf_dirs import read_json_object, refuse_remote_code


def model_dir(path: str | Path) -> Path:
    """`path` as a model directory (with config.json) that brings no code of its own."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ProtlmError(f"{path}: not a model directory (no config.json)")
    refuse_remote_code(path)
    return path


def load_config(path: str | Path):
    """The HF config of a model directory."""
    from transformers import AutoConfig

    path = model_dir(path)
    model_type = read_json_object(path / "config.json").get("model_type")
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (ValueError, KeyError, TypeError) as e:  # unknown model_type, or fields of the wrong type
        raise ProtlmError(f"{path / 'config.json'}: not a config transformers can load (model_type "
                          f"{model_type!r}: {str(e).splitlines()[0][:160]})") from None  # fmt: skip


def load_safetensors_model(model_cls, path: str | Path, **kwargs):
    """`model_cls.from_pretrained(path)` from safetensors weights only, never remote code.

    SDPA attention by default, except for Longformer (its own sliding-window kernel)."""
    path = model_dir(path)
    model_type = read_json_object(path / "config.json").get("model_type")
    attention = {} if model_type == "longformer" else {"attn_implementation": "sdpa"}
    try:
        return model_cls.from_pretrained(path, use_safetensors=True, trust_remote_code=False, **{**attention, **kwargs})
    except OSError:
        raise ProtlmError(
            f"{path}: no model.safetensors; protlm loads safetensors weights only (convert a .bin with "
            "`model.save_pretrained(dir, safe_serialization=True)` in a trusted environment)"
        ) from None
    except ValueError as e:  # e.g. an unknown model_type reached through an Auto class
        raise ProtlmError(
            f"{path / 'config.json'}: cannot build a model from it ({str(e).splitlines()[0][:160]})"
        ) from None
