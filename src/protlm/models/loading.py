"""The one home for models: what a model directory or HF Hub id holds, and loading it safely.

`open_model(spec)` answers "what kind of model is this?" once, for every command: a local directory
or a Hub id (`facebook/esm2_t6_8M_UR50D`, resolved through the standard HF cache, so it works with
`HF_HUB_OFFLINE=1` once cached), its config, its backbone (RoBERTa, Longformer, ESM-2, BERT /
ProtBERT), and what protlm wrote beside it (a fine-tuned task, a composition baseline).

The safety rules hold here, in one place:
- a directory whose JSON names custom code (`auto_map`) is refused, and `trust_remote_code=False`
  is passed to every HF loader;
- weights load from `model.safetensors` only: a pickled `pytorch_model.bin` is never opened
  (unpickling can run code) and never downloaded;
- a malformed `config.json` (bad JSON, unknown `model_type`) is a one-line error naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from protlm.errors import InputError, ProtlmError
from protlm.io.hf_dirs import ADAPTER_CONFIG, refuse_remote_code
from protlm.io.structured import read_json_object
from protlm.models.backbones import BACKBONES, Backbone, backbone
from protlm.models.size import check_model_size

TASK_FILE = "protlm_task.json"  # written by `protlm finetune` beside a task model or baseline
# Read off the backbone table (models/backbones.py), for callers that index by model_type.
POSITION_OFFSETS = {name: b.position_offset for name, b in BACKBONES.items()}
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]  # never *.bin / *.pt / *.pkl: pickles
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")


def resolve(spec: str | Path) -> Path:
    """A local directory as is; an HF Hub id (`org/name`) as its snapshot in the HF cache (downloaded
    once, safetensors and JSON / vocabulary files only; offline with `HF_HUB_OFFLINE=1`)."""
    path = Path(spec)
    if path.is_dir():
        return path
    text = str(spec)
    if not _HUB_ID.match(text) or ".." in text:
        raise ProtlmError(f"{spec}: not a model directory (no such directory, nor an HF Hub id like org/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(text, allow_patterns=HUB_FILES))
    except LocalEntryNotFoundError:
        raise ProtlmError(f"{spec}: not in the HF cache and the Hub cannot be reached (offline?); run once with "
                          "network access, or give a local directory") from None  # fmt: skip
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise ProtlmError(f"{spec}: cannot fetch from the HF Hub ({str(e).splitlines()[0][:160]})") from None


def model_dir(path: str | Path, adapter_base: bool = False) -> tuple[Path, dict]:
    """`path` as a model directory that brings no code of its own, and its config.json as read (once).
    A root LoRA adapter (which transformers applies on load) must be one protlm would write, and a base
    model it names must pass the same checks (older transformers load the base from there)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ProtlmError(f"{path}: not a model directory (no config.json)")
    read: dict[str, dict] = {}
    adapter = refuse_remote_code(path, read)
    if adapter is not None and adapter_base:
        raise ProtlmError(f"{path / ADAPTER_CONFIG}: the base model of an adapter has an adapter itself")
    base = (adapter or {}).get("base_model_name_or_path")
    if base and Path(base).resolve() != path.resolve():
        if not Path(base).is_dir():
            raise ProtlmError(f"{path / ADAPTER_CONFIG}: base_model_name_or_path {base[:200]!r} is not a local "
                              "model directory; protlm checks a base before loading it (point it at one, or "
                              "remove it to use this directory's own weights)")  # fmt: skip
        model_dir(base, adapter_base=True)
    return path, read["config.json"]


def hf_config(path: Path, raw: dict):
    """The HF config of a checked model directory, from its config.json as read (`raw`), as
    `AutoConfig.from_pretrained` builds it, without reading the file again."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import CONFIG_MAPPING

    model_type = raw.get("model_type")
    try:
        config = CONFIG_MAPPING[model_type].from_dict(dict(raw))
    except (ValueError, KeyError, TypeError, StrictDataclassError) as e:  # unknown model_type, fields of wrong type
        raise ProtlmError(f"{path / 'config.json'}: not a config transformers can load (model_type "
                          f"{model_type!r}: {str(e).splitlines()[0][:160]})") from None  # fmt: skip
    config.name_or_path = str(path)
    return config


def load_config(path: str | Path):
    """The HF config of a model directory."""
    return hf_config(*model_dir(path))


def load_safetensors_model(model_cls, path: str | Path, **kwargs):
    """`model_cls.from_pretrained(path)` from safetensors weights only, never remote code, with the
    family's attention implementation (models/backbones.py)."""
    return open_model(path).load(model_cls, **kwargs)


def check_backbone(config, path) -> str:
    """The config's model_type, when protlm supports it as a backbone."""
    return backbone(config, path).name


def model_max_tokens(config) -> int:
    """Longest input (incl. special tokens) the model's positions allow."""
    return config.max_position_embeddings - backbone(config).position_offset


DENSE_WINDOW = 2048  # default window of dense attention: ProtBERT allows 40,000 positions, O(L^2) memory


def window_tokens(config, requested: int | None = None) -> int:
    """Tokens per window over long inputs: `requested` (at most the model's positions), else the model's
    positions, capped at `DENSE_WINDOW` for dense attention (Longformer's sliding window is linear)."""
    limit = model_max_tokens(config)
    if requested:
        return min(requested, limit)
    return limit if backbone(config).sliding_window else min(limit, DENSE_WINDOW)


def mlm_head(model):
    """The masked-LM head of an HF `*ForMaskedLM` (`lm_head` for RoBERTa / Longformer / ESM, `cls` for BERT)."""
    head = getattr(model, "lm_head", None)
    head = getattr(model, "cls", None) if head is None else head
    if head is None:
        raise ProtlmError(f"{type(model).__name__} has no masked-LM head")
    return head


@dataclass
class ModelDir:
    """What one model directory holds, each file read once: its config.json and protlm's task file."""

    spec: str  # what the user gave: a directory or a Hub id
    path: Path  # the local directory (the HF cache snapshot for a Hub id)
    task: dict | None  # protlm_task.json of a fine-tuned model or baseline, else None
    raw: dict | None = None  # config.json as read (None for a composition baseline, which has none)
    _config: object = field(default=None, repr=False)

    @property
    def is_baseline(self) -> bool:
        return self.task is not None and "baseline" in self.task

    @property
    def is_task_model(self) -> bool:
        return self.task is not None and not self.is_baseline

    def hf_config(self):
        """The HF config (any model_type transformers knows), built once."""
        if self._config is None:
            if self.raw is None:
                raise ProtlmError(f"{self.spec}: not a model directory (no config.json)")
            self._config = hf_config(self.path, self.raw)
        return self._config

    def config(self):
        """The HF config of a supported backbone."""
        config = self.hf_config()
        check_backbone(config, self.spec)
        return config

    @property
    def backbone(self) -> Backbone:
        return backbone(self.config(), self.spec)

    def tokenizer(self):
        from protlm.tokenization import load_tokenizer

        if self.raw is not None:
            self.hf_config()  # transformers reads it too: a damaged one is named as such, first
        return load_tokenizer(self.path)

    def load(self, model_cls, **kwargs):
        """`model_cls.from_pretrained` on this directory: its config as built here, safetensors weights only,
        never remote code, the family's attention implementation unless `attn_implementation` is given."""
        from safetensors import SafetensorError

        from protlm.progress import no_hf_bars

        config = kwargs.pop("config", None) or self.config()
        check_model_size(config, self.path / "config.json")
        kwargs = {**backbone(config, self.spec).load_kwargs(), **kwargs}
        try:
            with no_hf_bars():  # no "Loading weights" bar per model load
                return model_cls.from_pretrained(
                    self.path, config=config, use_safetensors=True, trust_remote_code=False, **kwargs
                )
        except OSError:
            raise ProtlmError(
                f"{self.path}: no model.safetensors; protlm loads safetensors weights only (convert a .bin with "
                "`model.save_pretrained(dir, safe_serialization=True)` in a trusted environment)"
            ) from None
        except (ValueError, KeyError, AttributeError, TypeError, RuntimeError, IndexError) as e:
            # an unknown model_type or activation, a pad_token_id past the vocabulary, weights whose shapes
            # disagree with the config: the config and the weights do not make a model
            first = (str(e).splitlines() or [type(e).__name__])[0][:160]
            raise ProtlmError(f"{self.path / 'config.json'}: cannot build a model from it and its weights "
                              f"({first})") from None  # fmt: skip
        except SafetensorError as e:  # a truncated or corrupt weights file
            raise ProtlmError(f"{self.path / 'model.safetensors'}: not a readable safetensors file "
                              f"({str(e)[:160]})") from None  # fmt: skip

    def encoder(self, **kwargs):
        """The bare encoder (no head), for embeddings and attention."""
        from transformers import AutoModel

        with quiet_hf():  # the MLM / task head is not needed: no load report for it
            if self.is_task_model:
                return self.task_model(**kwargs).base_model
            return self.load(AutoModel, add_pooling_layer=False, **kwargs)

    def masked_lm(self):
        from transformers import AutoModelForMaskedLM

        if self.task is not None:
            raise ProtlmError(f"{self.spec}: a fine-tuned model has no masked-LM head; use the pre-trained model")
        with quiet_hf():
            return self.load(AutoModelForMaskedLM)

    def task_model(self, config=None, **kwargs):
        from protlm.tasks.model import task_model_class

        config = config or self.config()
        return self.load(task_model_class(config), config=config, **kwargs)


_SCALAR = (str, int, float, bool)
# protlm_task.json, as `protlm finetune` writes it: each field's JSON type (None allowed where listed)
_TASK_SCHEMA = {"task": str, "kind": str, "labels": list, "data": dict, "seed": int, "config": dict, "baseline": dict,
                "model_source": (str, type(None)), "data_summary": dict}  # fmt: skip
_TASK_DATA = {"data": (str, type(None)), "background": (str, type(None)), "sequences": (str, type(None)),
              "split_seed": int, "strict": bool}  # fmt: skip
_BASELINE = {"kind": str, "n_classes": int, "symmetric": bool}


def read_task_file(path: Path) -> dict:
    """`protlm_task.json` of a fine-tuned model or baseline, its fields checked to have the types protlm
    writes (a model dir may come from someone else): InputError naming the file and the field otherwise."""
    info = read_json_object(path)
    for fields, value, where in ((_TASK_SCHEMA, info, ""), (_TASK_DATA, info.get("data"), "data."),
                                 (_BASELINE, info.get("baseline"), "baseline.")):  # fmt: skip
        for key, kind in fields.items() if isinstance(value, dict) else ():
            if key in value and not (isinstance(value[key], kind) and (kind is bool or type(value[key]) is not bool)):
                raise InputError(path, f"{where}{key} is not what protlm writes there")
    if not all(type(label) in _SCALAR for label in info.get("labels", [])):
        raise InputError(path, "labels must be a list of names")
    return info


def open_model(spec: str | Path) -> ModelDir:
    """A model directory or Hub id, checked (config or task file present, no custom code)."""
    path = resolve(spec)
    task_file = path / TASK_FILE
    task = read_task_file(task_file) if task_file.is_file() else None
    raw = None
    if task is None or "baseline" not in task:
        path, raw = model_dir(path)
    return ModelDir(str(spec), path, task, raw)


class quiet_hf:  # noqa: N801 (a context manager used like a function)
    """Silence transformers' per-load report (unused heads are expected when loading an encoder)."""

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self._verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()

    def __exit__(self, *exc):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self._verbosity)
        hf_logging.enable_progress_bar()
