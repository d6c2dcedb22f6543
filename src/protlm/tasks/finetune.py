"""`protlm finetune` and `protlm evaluate`: downstream tasks on top of a pre-trained encoder.

Pipeline: task loader (`tasks/table.py`) -> tokenize once (cached) -> windows / pair crops and
token-budget batches (`tasks/batches.py`) -> `ProteinTaskModel` / `LongformerTaskModel` -> the shared training loop
(`train/loop.py`: same schedule, checkpoints, resume, budgets, metrics and distributed launch as
pre-training). `--model baseline` fits the composition reference instead; `--model scratch...`
trains the same architecture from a random initialisation. With several seeds every seed gets
its own run directory and the summary reports mean +- std.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from protlm.errors import ProtlmError
from protlm.io import ResiduePolicy
from protlm.tasks import metrics as M
from protlm.tasks.baseline import Baseline
from protlm.tasks.batches import TaskSet, build_taskset
from protlm.tasks.data import TaskData, subsample
from protlm.tasks.report import plot_confusion, plot_curves, write_json, write_predictions
from protlm.tasks.table import DataRequest, TaskSpec, get_task
from protlm.train.config import TrainConfig
from protlm.train.loop import derive_seed

TASK_FILE = "protlm_task.json"
DEV_MONITOR = 2000
NO_MONITORING = 10**9


@dataclass
class FinetuneConfig(TrainConfig):
    """`protlm finetune` options on top of the loop's (budget default: the task's epochs)."""

    out: str = "runs/finetune"
    task: str = "localization"
    model: str = ""  # pre-trained dir | scratch:DIR | scratch (with tokenizer + preset) | baseline
    data: str | None = None  # task data (None = built-in where the task has it)
    background: str | None = None
    tokenizer: str | None = None  # for `--model scratch`
    preset: str = "tiny"  # for `--model scratch`
    freeze: bool = False
    pooling: str | None = None  # cls | mean (default: cls, mean when frozen)
    weighted_loss: bool = False
    batch_size: int | None = None  # sequences per batch (default: the task's)
    max_tokens: int | None = None
    train_limit: int | None = None  # subsample the training split (seeded)
    split_seed: int = 0  # seed of splits made here (independent of the training seeds)
    seeds: list[int] = field(default_factory=lambda: [0])
    resume: bool = False  # continue each seed's run from its newest checkpoint
    lr: float | None = None  # default: the task's
    warmup_steps: int = 0
    warmup_ratio: float = 0.06
    eval_every: int = 10**9  # NO_MONITORING: score after training only; set e.g. 100 to follow dev metrics
    save_every: int = 10**9
    strict: bool = False
    cache_dir: str | None = None

    def validate(self) -> None:
        spec = get_task(self.task)
        if self.lr is None:
            self.lr = spec.lr
        if self.max_steps is None and self.max_epochs is None and self.max_time is None:
            self.max_epochs = spec.epochs
        super().validate()
        if not self.model:
            raise ProtlmError("--model is required: a pre-trained model directory, scratch[:DIR] or baseline")
        if self.pooling not in (None, "cls", "mean"):
            raise ProtlmError(f"--pooling must be cls or mean, got {self.pooling!r}")
        if not self.seeds:
            raise ProtlmError("--seeds needs at least one seed, e.g. 0,1,2")


def load_task_data(spec: TaskSpec, data: str | None, background: str | None, split_seed: int, strict: bool) -> TaskData:
    return spec.load(DataRequest(data, split_seed, ResiduePolicy(strict=strict), background))


# ---------------------------------------------------------------- models


def _task_config(config, spec: TaskSpec, labels: tuple[str, ...], pooling: str):
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {name: i for i, name in enumerate(labels)}
    config.protlm_head = "residue" if spec.kind == "residue" else "sequence"
    config.protlm_pooling = pooling
    from protlm.tasks.model import task_model_class

    config.architectures = [task_model_class(config).__name__]
    return config


def build_task_model(cfg: FinetuneConfig, spec: TaskSpec, labels: tuple[str, ...], seed: int):
    """(model, tokenizer, source description) for a pre-trained dir, scratch:DIR or scratch + preset."""
    from transformers import AutoConfig

    from protlm.tasks.model import task_model_class
    from protlm.tokenization import load_tokenizer
    from protlm.train.pretrain import load_safetensors_model

    pooling = cfg.pooling or ("mean" if cfg.freeze else "cls")
    torch.manual_seed(derive_seed(seed, 11))
    if cfg.model == "scratch":
        from protlm.models.presets import load_preset

        if not cfg.tokenizer:
            raise ProtlmError("--model scratch needs --tokenizer (or use scratch:PRETRAINED_DIR for its architecture)")
        tokenizer = load_tokenizer(cfg.tokenizer)
        preset = load_preset(cfg.preset)
        kind = preset.pop("model_type")
        config = AutoConfig.for_model(kind, **preset, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
        config = _task_config(config, spec, labels, pooling)
        return task_model_class(config)(config), tokenizer, f"scratch ({cfg.preset})"
    scratch = cfg.model.startswith("scratch:")
    path = Path(cfg.model.removeprefix("scratch:"))
    if not (path / "config.json").is_file():
        raise ProtlmError(
            f"{path}: not a model directory (no config.json); --model takes a pre-trained dir, scratch[:DIR] or baseline"
        )
    tokenizer = load_tokenizer(str(path))
    config = _task_config(AutoConfig.from_pretrained(path), spec, labels, pooling)
    if config.model_type not in ("roberta", "longformer"):
        raise ProtlmError(f"{path}: fine-tuning supports RoBERTa and Longformer encoders, found {config.model_type!r}")
    if scratch:
        return task_model_class(config)(config), tokenizer, f"scratch (architecture of {path})"
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the head is new by design: report what matters ourselves
    try:
        model, loading = load_safetensors_model(task_model_class(config), path, config=config, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = [k for k in loading["missing_keys"] if k.startswith(f"{model.base_model_prefix}.")]
    if missing:
        raise ProtlmError(f"{path}: encoder weights missing from the checkpoint ({', '.join(missing[:3])}, ...)")
    return model, tokenizer, str(path)


class TaskObjective(nn.Module):
    """forward(batch fields) -> (loss, n) for the loop; a frozen encoder stays in eval mode."""

    def __init__(self, model: nn.Module, class_weights: torch.Tensor | None, frozen: bool):
        super().__init__()
        self.model, self.frozen = model, frozen
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.zeros(0))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.model.base_model.eval()
        return self

    def forward(self, labels: torch.Tensor, **fields):
        weights = self.class_weights if self.class_weights.numel() else None
        out = self.model(**fields, labels=labels, class_weights=weights)
        return out.loss, (labels != -100).sum()


# ---------------------------------------------------------------- prediction


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(-1, keepdims=True)


@torch.inference_mode()
def predict_logits(model: nn.Module, ts: TaskSet, tokens_per_batch: int, batch_size: int) -> list[np.ndarray]:
    """Logits per example: (C,) for sequence / pair tasks, (n_residues, C) for residue tasks.

    Every evaluation window is scored; logits are averaged over the windows covering an example
    (sequence tasks) or a residue (residue tasks). Batch composition never changes a prediction:
    padding is masked and each window is scored independently.
    """
    model.eval()
    n_classes = model.config.num_labels
    items = ts.items(None)
    plan = ts.plan(items, tokens_per_batch, np.random.default_rng(0), batch_size)
    if ts.kind == "residue":
        sums = [np.zeros((len(ex.parts[0]), n_classes)) for ex in ts.examples]
        counts = [np.zeros(len(ex.parts[0])) for ex in ts.examples]
    else:
        sums, counts = list(np.zeros((len(ts), n_classes))), list(np.zeros(len(ts)))
    for batch_items in plan:
        batch = ts.make_batch(batch_items)
        fields = {k: v for k, v in batch.fields().items() if k != "labels"}
        logits = model(**fields).logits.float().numpy()
        for row, i in enumerate(batch.examples):
            if ts.kind == "residue":
                n = int((batch.residue_aa[row] > 0).sum())
                r0 = int(batch.residue_start[row])
                sums[i][r0 : r0 + n] += logits[row, :n]
                counts[i][r0 : r0 + n] += 1
            else:
                sums[i] += logits[row]
                counts[i] += 1
    if ts.kind == "residue":
        return [s / np.maximum(c, 1)[:, None] for s, c in zip(sums, counts, strict=True)]
    return [s / max(c, 1) for s, c in zip(sums, counts, strict=True)]


def predict(
    model: nn.Module, ts: TaskSet, tokens_per_batch: int, batch_size: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(y, probabilities, ids): one row per example, or per scored residue for residue tasks."""
    logits = predict_logits(model, ts, tokens_per_batch, batch_size)
    if ts.kind == "residue":
        ys, zs, ids = [], [], []
        for ex, z in zip(ts.examples, logits, strict=True):
            keep = np.asarray(ex.label) >= 0
            ys.append(np.asarray(ex.label)[keep].astype(np.int64))
            zs.append(z[keep])
            ids.extend(f"{ex.id}:{r + 1}" for r in np.flatnonzero(keep))
        y, z = np.concatenate(ys), np.concatenate(zs)
    else:
        y = np.array([int(ex.label) for ex in ts.examples], dtype=np.int64)
        z, ids = np.stack(logits) if logits else np.zeros((0, model.config.num_labels)), [ex.id for ex in ts.examples]
    return y, softmax(z), ids


# ---------------------------------------------------------------- training


@dataclass
class TaskSource:
    """The loop's StepSource over a training TaskSet: a fresh random window / crop per epoch."""

    ts: TaskSet
    tokens_per_batch: int
    batch_size: int
    seed: int

    def epoch_batches(self, epoch: int):
        rng = np.random.default_rng(derive_seed(self.seed, 12, epoch))
        return self.ts.plan(self.ts.items(rng), self.tokens_per_batch, rng, self.batch_size)

    def make_batch(self, items, generator: torch.Generator):
        return self.ts.make_batch(items)


def class_weights(data: TaskData) -> torch.Tensor:
    """Inverse-frequency weights n / (C * n_c) of the training split (0 for absent classes)."""
    counts = np.array(list(data.class_counts("train").values()), dtype=np.float64)
    w = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def train_one(
    cfg: FinetuneConfig, spec: TaskSpec, data: TaskData, seed: int, run_dir: Path, log: Callable[[str], None]
) -> Path:
    """Fine-tune (or fit the baseline) for one seed; returns the saved model directory."""
    info = {
        "task": spec.name,
        "kind": spec.kind,
        "labels": list(data.labels),
        "data": {"data": cfg.data, "background": cfg.background, "split_seed": cfg.split_seed, "strict": cfg.strict},
        "seed": seed,
        "config": asdict(cfg),
    }
    train = subsample(data.split("train"), cfg.train_limit, derive_seed(seed, 13))
    if cfg.model == "baseline":
        t0 = time.perf_counter()
        model = Baseline(spec.kind, len(data.labels), spec.symmetric)
        model.fit(train, seed, "balanced" if cfg.weighted_loss else None)
        out = run_dir / "model"
        model.save(out, {**info, "model_source": "baseline", "train_seconds": time.perf_counter() - t0})
        log(f"composition baseline fitted on {len(train):,} examples in {time.perf_counter() - t0:.0f}s -> {out}")
        return out

    from accelerate import Accelerator

    from protlm.models import model_max_tokens
    from protlm.train.checkpoint import checkpoints
    from protlm.train.loop import Fit, fit

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    ckpts = checkpoints(run_dir)
    if ckpts and not cfg.resume:
        raise ProtlmError(f"{run_dir} already holds checkpoints: pass --resume to continue it, or choose a new --out")
    if ckpts:  # resume: weights of the newest checkpoint; the loop restores optimizer, RNG and data position
        _, model, tokenizer, _ = load_finetuned(ckpts[-1], info_from=run_dir / "model", need_info=False)
        source = f"{cfg.model} (resumed from {ckpts[-1].name})"
    else:
        model, tokenizer, source = build_task_model(cfg, spec, data.labels, seed)
    if cfg.freeze:
        model.base_model.requires_grad_(False)
    limit = model_max_tokens(model.config)
    max_tokens = min(cfg.max_tokens or limit, limit)
    residue_lengths = None
    if spec.kind == "residue":
        from protlm.tasks.align import token_residue_lengths

        residue_lengths = token_residue_lengths(tokenizer)
    ts_train = build_taskset(spec.kind, train, tokenizer, max_tokens, cfg.cache_dir, residue_lengths)
    ts_dev = build_taskset(spec.kind, data.split("dev"), tokenizer, max_tokens, cfg.cache_dir, residue_lengths)
    batch_size = cfg.batch_size or spec.batch_size
    src = TaskSource(ts_train, cfg.tokens_per_batch, batch_size, seed)
    per_step = accelerator.num_processes * cfg.grad_accum
    steps_per_epoch = max(1, len(src.epoch_batches(0)) // per_step)
    total = cfg.max_steps if cfg.max_steps is not None else math.ceil((cfg.max_epochs or 1.0) * steps_per_epoch)
    loop_cfg = TrainConfig(**{k: getattr(cfg, k) for k in TrainConfig.__dataclass_fields__})
    loop_cfg.out, loop_cfg.seed = str(run_dir), seed
    loop_cfg.warmup_steps = cfg.warmup_steps or int(cfg.warmup_ratio * total)
    weights = class_weights(data) if cfg.weighted_loss else None
    objective = TaskObjective(model, weights, cfg.freeze)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(
        f"{spec.name}: {len(train):,} train / {len(ts_dev):,} dev examples; model {source} "
        f"({n_train / 1e6:.2f}M trainable parameters{', encoder frozen' if cfg.freeze else ''}); "
        f"{steps_per_epoch:,} steps/epoch, {total:,} steps"
    )

    # Dev metric while training on at most DEV_MONITOR examples (the full splits are scored at the end).
    monitor = ts_dev
    if len(ts_dev) > DEV_MONITOR:
        monitor = build_taskset(
            spec.kind,
            subsample(data.split("dev"), DEV_MONITOR, 0),
            tokenizer,
            max_tokens,
            cfg.cache_dir,
            residue_lengths,
        )

    def evaluate(obj) -> dict:
        y, p, _ = predict(model, monitor, cfg.tokens_per_batch, batch_size)
        return {f"dev_{spec.primary}": M.compute((spec.primary,), y, p)[spec.primary]}

    extra = {TASK_FILE: json.dumps({**info, "model_source": source, "data_summary": data.summary()}, indent=2) + "\n"}
    run_dir.mkdir(parents=True, exist_ok=True)
    monitoring = cfg.eval_every < NO_MONITORING  # else dev and test are scored once, after training
    job = Fit(
        objective, model, tokenizer, src, loop_cfg, run_dir, accelerator, evaluate if monitoring else None,
        batch_fields=lambda b: b.fields(), extra_files=lambda: extra,
    )  # fmt: skip
    fit(job, total, steps_per_epoch, log)
    return run_dir / "model"


# ---------------------------------------------------------------- evaluation


def load_finetuned(path: Path, info_from: Path | None = None, need_info: bool = True):
    """(kind, model, tokenizer, task info) of a `protlm finetune` model directory (or checkpoint)."""
    info_file = (info_from or path) / TASK_FILE
    if need_info and not info_file.is_file():
        raise ProtlmError(f"{path}: not a fine-tuned protlm model (no {TASK_FILE}); use the run's model/ directory")
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    if "baseline" in info:
        return "baseline", Baseline.load(path), None, info
    from transformers import AutoConfig

    from protlm.tasks.model import task_model_class
    from protlm.tokenization import load_tokenizer
    from protlm.train.pretrain import load_safetensors_model

    model = load_safetensors_model(task_model_class(AutoConfig.from_pretrained(path)), path)
    return "model", model, load_tokenizer(str(path)), info


def evaluate_model(
    model_dir: Path,
    splits: list[str] | None,
    out: Path,
    data: TaskData | None = None,
    tokens_per_batch: int = 8192,
    log: Callable[[str], None] = print,
) -> dict:
    """Score a fine-tuned model on splits; write results.json, predictions, confusion / ROC / PR PNGs."""
    kind, model, tokenizer, info = load_finetuned(model_dir)
    spec = get_task(info["task"])
    if data is None:
        d = info["data"]
        data = load_task_data(spec, d["data"], d["background"], d["split_seed"], d["strict"])
    if list(data.labels) != info["labels"]:
        raise ProtlmError(
            f"{model_dir}: the model's label space ({len(info['labels'])} classes) differs from the data's ({len(data.labels)})"
        )
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"task": spec.name, "model": str(model_dir), "model_source": info.get("model_source"), "splits": {}}
    residue_lengths = None
    for split in splits or ["dev", *data.test_splits]:
        examples = data.split(split)
        t0 = time.perf_counter()
        if kind == "baseline":
            y, prob = model.predict_proba(examples)
            ids = [ex.id for ex in examples] if spec.kind != "residue" else [""] * len(y)
        else:
            if spec.kind == "residue" and residue_lengths is None:
                from protlm.tasks.align import token_residue_lengths

                residue_lengths = token_residue_lengths(tokenizer)
            from protlm.models import model_max_tokens

            ts = build_taskset(spec.kind, examples, tokenizer, model_max_tokens(model.config), None, residue_lengths)
            y, prob, ids = predict(model, ts, tokens_per_batch, 64)
        scores = M.compute(spec.metrics, y, prob)
        results["splits"][split] = {
            "n_examples": len(examples),
            "n_scored": int(len(y)),
            "metrics": scores,
            "class_counts": data.class_counts(split),
            "seconds": time.perf_counter() - t0,
        }
        title = f"{spec.name} {split} ({len(examples):,})"
        plot_confusion(y, prob, data.labels, out / f"confusion_{split}.png", title)
        if len(data.labels) == 2:
            plot_curves(y, prob, out, split, title)
        if spec.kind != "residue":
            write_predictions(out / f"predictions_{split}.tsv", ids, y, prob, data.labels)
        log(f"{spec.name} {split}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()) + f" (n={len(y):,})")
    write_json(out / "results.json", results)
    return results


def finetune(cfg: FinetuneConfig, log: Callable[[str], None] = print) -> dict:
    """Train and evaluate every seed into `out/seed-K`; write `out/summary.json` (mean +- std)."""
    spec = get_task(cfg.task)
    data = load_task_data(spec, cfg.data, cfg.background, cfg.split_seed, cfg.strict)
    for r in data.reports:
        log(r.summary())
    log(f"{spec.name} splits: " + ", ".join(f"{k} {len(v):,}" for k, v in data.splits.items()))
    if not data.split("train"):
        raise ProtlmError(f"{data.source}: the training split is empty")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "data_summary.json", data.summary())
    per_seed = {}
    for seed in cfg.seeds:
        run_dir = out / f"seed-{seed}"
        model_dir = train_one(cfg, spec, data, seed, run_dir, log)
        per_seed[seed] = evaluate_model(model_dir, None, run_dir / "eval", data, cfg.tokens_per_batch, log)
    summary = summarize(spec, per_seed)
    write_json(out / "summary.json", summary)
    for split, scores in summary["splits"].items():
        log(
            f"{spec.name} {split} over seeds {cfg.seeds}: "
            + ", ".join(f"{k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in scores.items())
        )
    return summary


def summarize(spec: TaskSpec, per_seed: dict[int, dict]) -> dict:
    """Mean and standard deviation of every metric of every split over seeds."""
    first = next(iter(per_seed.values()))
    splits = {}
    for split in first["splits"]:
        splits[split] = {}
        for metric in spec.metrics:
            mean, std = M.mean_std([r["splits"][split]["metrics"][metric] for r in per_seed.values()])
            splits[split][metric] = {"mean": mean, "std": std}
    return {"task": spec.name, "seeds": list(per_seed), "model_source": first["model_source"], "splits": splits}
