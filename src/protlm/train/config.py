"""Typed training configuration: YAML recipe < CLI flags; the resolved config is saved with the run."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from protlm.errors import ProtlmError
from protlm.io.atomic import write_text
from protlm.io.structured import read_yaml, refuse_auto_map
from protlm.settings import setting

_TIME = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str | None) -> float | None:
    """'20m', '1h30m', '90s', '45' (seconds) -> seconds."""
    if text is None or text == "":
        return None
    text = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    m = _TIME.fullmatch(text)
    if not m or not any(m.groups()):
        raise ProtlmError(f"--max-time {text!r}: use e.g. 90s, 20m, 1h30m")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s


def parse_budget(text: str) -> int | str:
    """`auto` or a positive number of tokens."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise ProtlmError(f"--tokens-per-batch {text!r}: give a number of tokens or auto") from None
    return value


@dataclass
class TrainConfig:
    """Options of the training loop shared by pre-training and fine-tuning: each field is one flag
    (`cli/options.config_command`), with the help declared here."""

    out: str = setting("runs/pretrain", note="Run directory: checkpoints, metrics.jsonl, config.yaml, model/.")
    seed: int = setting(0, note="Of initialisation, batching, masking and dropout.")
    device: str = setting("auto")
    lr: float = setting(5e-4, "Peak learning rate (AdamW).")
    warmup_steps: int = setting(100, "Linear warmup steps, then linear decay.")
    weight_decay: float = setting(0.01, "AdamW weight decay.")
    adam_beta1: float = setting(0.9, "AdamW beta1.")
    adam_beta2: float = setting(0.98, "AdamW beta2.")
    adam_eps: float = setting(1e-6, "AdamW epsilon.")
    max_grad_norm: float = setting(1.0, "Clip gradients to this global norm (0: no clipping).")
    grad_accum: int = setting(1, "Micro-batches accumulated per optimizer step.")
    tokens_per_batch: int | str = setting("auto", note="auto: 8,192 on the CPU; on a GPU, pretrain measures the largest budget that fits (the longest inputs, 15% of memory left free), up to 131,072.", parse=lambda text: parse_budget(text))  # fmt: skip
    tokens_per_step: int | None = setting(None, "Target tokens per optimizer step and process: sets --grad-accum to reach it in --tokens-per-batch micro-batches.")  # fmt: skip
    max_steps: int | None = setting(None, "Stop after this many optimizer steps.")
    max_epochs: float | None = setting(None, "Stop after this many epochs.")
    max_time: str | None = setting(None, "Stop after this much training time, e.g. 90s, 20m, 1h30m.")
    precision: str = setting("auto")
    prefetch: str = setting("off", "on: build the next batch in a background thread (no measured gain: bench/RESULTS.md).")  # fmt: skip
    kernels: str = setting("auto", "protlm's CPU training kernels (chunked attention dropout, cheaper dropout masks; models/kernels.py): on, off (plain HF) or auto (on on the CPU, off on a GPU).")  # fmt: skip
    log_every: int = setting(10, "Log metrics every N steps.")
    eval_every: int = setting(200, "Held-out evaluation every N steps.")
    save_every: int = setting(500, "Checkpoint every N steps.")
    keep_checkpoints: int = setting(2, "Checkpoints kept (the newest).")
    resume: bool = setting(False, "Continue from the newest good checkpoint in --out.")
    gradient_checkpointing: bool = setting(False, "Recompute activations in the backward pass: less memory, ~30% slower.")  # fmt: skip
    lora_rank: int = setting(0, "Train LoRA adapters of this rank (peft) instead of all weights; saved in model/adapter/ and merged into model/ (0: all weights).")  # fmt: skip
    lora_alpha: float | None = setting(None, "LoRA scale numerator (default 2 x rank).")
    lora_targets: str | None = setting(None, "Comma-separated linear layers that get adapters (default: the backbone's, query,value for every family; models/backbones.py).")  # fmt: skip

    def validate(self) -> None:
        positive = ("lr", "grad_accum", "log_every", "eval_every", "save_every", "keep_checkpoints")
        for name in positive:
            if getattr(self, name) is None or getattr(self, name) <= 0:
                raise ProtlmError(f"invalid config: {name} must be > 0, got {getattr(self, name)!r}")
        if self.tokens_per_batch != "auto" and (type(self.tokens_per_batch) is not int or self.tokens_per_batch <= 0):
            raise ProtlmError(f"invalid config: tokens_per_batch must be auto or > 0, got {self.tokens_per_batch!r}")
        if self.tokens_per_step is not None and self.tokens_per_step <= 0:
            raise ProtlmError(f"invalid config: tokens_per_step must be > 0, got {self.tokens_per_step!r}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ProtlmError("invalid config: warmup_steps, weight_decay and max_grad_norm must be >= 0")
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1):
            raise ProtlmError("invalid config: Adam betas must be in [0, 1)")
        if self.prefetch not in ("on", "off"):
            raise ProtlmError(f"invalid config: prefetch must be on or off, got {self.prefetch!r}")
        if self.kernels not in ("auto", "on", "off"):
            raise ProtlmError(f"invalid config: kernels must be auto, on or off, got {self.kernels!r}")
        if self.device != "auto" and self.device.partition(":")[0] not in ("cpu", "cuda"):
            raise ProtlmError(f"invalid config: device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ProtlmError(f"invalid config: precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.lora_rank < 0:
            raise ProtlmError(f"invalid config: lora_rank must be >= 0, got {self.lora_rank}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ProtlmError(f"invalid config: max_steps must be > 0, got {self.max_steps}")
        if self.max_epochs is not None and self.max_epochs <= 0:
            raise ProtlmError(f"invalid config: max_epochs must be > 0, got {self.max_epochs}")
        parse_duration(self.max_time)
        if self.max_steps is None and self.max_epochs is None and self.max_time is None:
            raise ProtlmError("give a budget: --max-steps, --max-epochs or --max-time")


@dataclass
class PretrainConfig(TrainConfig):
    """`protlm pretrain` options: data and model on top of the loop's."""

    tokenizer: str = setting("", note="Default: a pre-trained --model's own.")
    model: str = setting("tiny", note="Or a preset (tiny, roberta-small, roberta-base, esm-size) or preset YAML: a fresh model; a pre-trained model is continued (its tokenizer by default).")  # fmt: skip
    corpus: str | None = setting("scl2205", note="Or a corpus store (`protlm corpus prepare`); files are prepared into the cache once. Default: SCL2205 train+eval.", off="--no-corpus")  # fmt: skip
    pairs: str | None = setting(None, note="A pair store (`protlm pairs prepare`), a pair table (id_a,id_b,seq_a,seq_b[,label][,split]) or a directory of pairs*.parquet (prepared into the cache once), or 'builtin'.")  # fmt: skip
    assemblies: str | None = setting(None, "Assemblies of 2+ proteins: FASTA with chains joined by ':', or an id,members table.")  # fmt: skip
    assembly_sequences: str | None = setting(None, "Sequences of the members of an id,members assembly table.")
    mix: dict[str, float] = setting(
        factory=lambda: {"singles": 1.0, "binding": 1.0, "nonbinding": 1.0, "assemblies": 1.0},
        help="Mixture weights, e.g. singles=1,binding=0.5,nonbinding=0.5,assemblies=1.",
        parse=lambda text: parse_mix(text),
    )
    max_tokens: int | None = setting(None, note="Default: the model's.")
    pack: str = setting("auto", "Pack several proteins into each row of --max-tokens, each attending to itself only (static shapes, no padding): on, off, or auto (off: not yet measured faster on any device; bench/RESULTS.md). RoBERTa and BERT models.")  # fmt: skip
    mlm_probability: float = setting(0.15, "Share of tokens masked.")
    eval_fraction: float = setting(0.02, "Share of the corpus held out for evaluation.")
    eval_max_examples: int = setting(512, "Held-out examples scored at each evaluation.")
    strict: bool = setting(False)
    dropout: float | None = setting(None, "Override the preset's hidden and attention dropout.")
    cache_dir: str | None = setting(None)

    @property
    def from_preset(self) -> bool:
        """True when `model` names a preset (a fresh model), not a pre-trained model (a directory or an
        `org/name` Hub id) to continue; an unknown bare name is then reported as an unknown preset."""
        from protlm.models.presets import PRESETS

        model = str(self.model)
        return model in PRESETS or model.endswith((".yaml", ".yml")) or ("/" not in model and not Path(model).is_dir())

    def validate(self) -> None:
        super().validate()
        if not self.tokenizer and self.from_preset:
            raise ProtlmError("invalid config: --tokenizer is required with a preset model (train one with "
                              "`protlm tokenizer train`), or continue a pre-trained --model with its own")  # fmt: skip
        if not self.corpus and not self.pairs and not self.assemblies:
            raise ProtlmError("invalid config: give --corpus, --pairs, --assemblies or a combination")
        unknown = set(self.mix) - {"singles", "binding", "nonbinding", "assemblies"}
        if unknown or any(w < 0 for w in self.mix.values()) or not any(w > 0 for w in self.mix.values()):
            raise ProtlmError(
                f"invalid config: mix weights are singles/binding/nonbinding/assemblies >= 0, got {self.mix}"
            )
        if not 0 < self.mlm_probability < 1:
            raise ProtlmError(f"invalid config: mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if not 0 <= self.eval_fraction < 1:
            raise ProtlmError(f"invalid config: eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.max_tokens is not None and self.max_tokens < 8:
            raise ProtlmError(f"invalid config: max_tokens must be >= 8, got {self.max_tokens}")
        if self.pack not in ("auto", "on", "off"):
            raise ProtlmError(f"invalid config: pack must be auto, on or off, got {self.pack!r}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ProtlmError(f"invalid config: dropout must be in [0, 1), got {self.dropout}")


def parse_mix(text: str) -> dict[str, float]:
    """'singles=1,binding=0.5,nonbinding=0.5[,assemblies=1]' -> dict."""
    out = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ProtlmError(f"--mix {text!r}: use e.g. singles=1,binding=0.5,nonbinding=0.5") from None
        if not eq:
            raise ProtlmError(f"--mix {text!r}: use e.g. singles=1,binding=0.5,nonbinding=0.5")
    return out


def load_config(cls, path: str | Path | None, overrides: dict) -> TrainConfig:
    """Recipe YAML (optional) updated with the CLI flags that were given (not None)."""
    values: dict = {}
    if path:
        if not Path(path).is_file():
            raise ProtlmError(f"{path}: config file not found")
        loaded = read_yaml(path) or {}  # no aliases: a recipe cannot expand when saved with the run
        if not isinstance(loaded, dict):
            raise ProtlmError(f"{path}: a config is a YAML mapping of option: value")
        refuse_auto_map(loaded, path)
        values.update(loaded)
    _check_types(cls, values, path)  # a recipe's values; the CLI's flags are typed by the parser
    values.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ProtlmError(f"unknown config option(s): {', '.join(unknown)}")
    if values.get("resume"):
        values = resumed(cls, values)
    cfg = cls(**values)
    try:
        cfg.validate()
    except TypeError as e:  # e.g. `lr: fast` in a YAML recipe
        raise ProtlmError(f"invalid config: wrong type of value ({e})") from None
    return cfg


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict[str, float]": (dict,)}


def _check_types(cls, values: dict, source) -> None:
    """ProtlmError naming `source` when a recipe's key is not text or a value is not of its field's type
    (`seed: abc`, `keep_checkpoints: 1.5`, `lora_targets: [1]`), before any value is used."""
    annotations = {f.name: str(f.type) for f in fields(cls)}
    for key, value in values.items():
        if type(key) is not str:
            raise ProtlmError(f"{source}: option names are text, found {type(key).__name__} {str(key)[:40]!r}")
        kind = annotations.get(key)
        if kind is None:
            continue  # unknown options are named below
        optional = kind.endswith(" | None")
        allowed = _TYPES.get(kind.removesuffix(" | None"))
        if allowed is None or (value is None and optional):
            continue
        ok = isinstance(value, allowed) and (bool in allowed or type(value) is not bool)
        if ok and isinstance(value, dict):
            ok = all(type(k) is str and type(v) in (int, float) for k, v in value.items())
        if not ok:
            raise ProtlmError(f"{source}: {key} must be {kind.replace(' | None', ' or null')}, "
                              f"found {type(value).__name__}")  # fmt: skip


RUN_CONFIG = "config.yaml"  # the resolved recipe a run saves in --out, and a resume restores
# What a resumed run may change on purpose: its budget, where it runs, how often it reports and saves.
# Every other option is the run's recipe: a resume continues it, and a flag that contradicts it is an error.
RESUME_MAY_CHANGE = frozenset({"out", "resume", "max_steps", "max_epochs", "max_time", "device", "log_every",
                               "eval_every", "save_every", "keep_checkpoints", "prefetch", "cache_dir"})  # fmt: skip


def resumed(cls, given: dict) -> dict:
    """The options of a resumed run: the recipe saved in --out (`RUN_CONFIG`), with the options given now laid
    over it. A given option that contradicts the saved recipe is an error naming both values, unless it is one
    that may change (`RESUME_MAY_CHANGE`). Without a saved recipe (nothing ran yet) the given options stand."""
    out = Path(given.get("out") or next(f.default for f in fields(cls) if f.name == "out"))
    path = out / RUN_CONFIG
    if not path.is_file():
        return given
    saved = read_yaml(path)
    if not isinstance(saved, dict):
        raise ProtlmError(f"{path}: a config is a YAML mapping of option: value")
    refuse_auto_map(saved, path)
    names = {f.name for f in fields(cls)}
    saved = {k: v for k, v in saved.items() if k in names}
    _check_types(cls, saved, path)
    for key, value in given.items():
        if key in RESUME_MAY_CHANGE or key not in saved or _same(key, value, saved[key]):
            continue
        flag = f"--{key.replace('_', '-')}"
        may = ", ".join(f"--{k.replace('_', '-')}" for k in sorted(RESUME_MAY_CHANGE - {"out", "resume"}))
        raise ProtlmError(f"--resume: {flag} {_shown(value)} contradicts the run in {out}, which has {key}: "
                          f"{_shown(saved[key])} ({path}); drop the flag to continue the run as it was, or start a "
                          f"new --out (a resume may change only {may})")  # fmt: skip
    return {**saved, **given}


def _same(key: str, given, saved) -> bool:
    """Equal values; the same file by two spellings; `auto` for the budget it resolved to."""
    if given == saved or (key == "tokens_per_batch" and given == "auto"):
        return True
    if isinstance(given, str) and isinstance(saved, str) and given and saved:
        a, b = Path(given).expanduser(), Path(saved).expanduser()
        return a.exists() and b.exists() and a.resolve() == b.resolve()
    return False


def _shown(value) -> str:
    """A value as its flag is written: `singles=1,binding=0.5`, `0,1,2`; (none) for an unset one."""
    if isinstance(value, dict):
        value = ",".join(f"{k}={v:g}" for k, v in value.items())
    elif isinstance(value, list):
        value = ",".join(map(str, value))
    return "(none)" if value in (None, "") else str(value)[:120]


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """The run's recipe, resolved (`--resume` is how it was started, not part of it)."""
    recipe = {k: v for k, v in asdict(cfg).items() if k != "resume"}
    write_text(path, yaml.safe_dump(recipe, sort_keys=False))
