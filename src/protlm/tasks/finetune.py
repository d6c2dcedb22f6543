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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from protlm.device import make_accelerator
from protlm.errors import ProtlmError
from protlm.io.atomic import write_json
from protlm.io.lock import run_lock
from protlm.models.loading import TASK_FILE, open_model, quiet_hf, window_tokens
from protlm.models.lora import configure, head_prefixes, load_lora_checkpoint
from protlm.models.presets import load_preset
from protlm.models.size import check_model_size
from protlm.tasks import metrics as M
from protlm.tasks.baseline import Baseline
from protlm.tasks.batches import TaskSet, build_taskset
from protlm.tasks.config import NO_MONITORING, FinetuneConfig
from protlm.tasks.data import TaskData, subsample
from protlm.tasks.evaluate import evaluate_model, load_finetuned
from protlm.tasks.model import task_model_class
from protlm.tasks.predict import predict
from protlm.tasks.table import TaskSpec, get_task, load_task_data
from protlm.tokenization import load_tokenizer
from protlm.train.checkpoint import checkpoints
from protlm.train.config import RUN_CONFIG, TrainConfig, save_config
from protlm.train.loop import Fit, derive_seed, fit

DEV_MONITOR = 2000


# ---------------------------------------------------------------- models


def _task_config(config, spec: TaskSpec, data: TaskData, pooling: str):
    """The encoder's config with the task head's settings: outputs, labels, head shape, the kind's own."""
    config.num_labels = spec.kind.n_outputs(data.labels)
    config.id2label = dict(enumerate(data.labels))
    config.label2id = {name: i for i, name in enumerate(data.labels)}
    config.protlm_head, config.protlm_kind = spec.kind.head, spec.kind.name
    config.protlm_pooling = pooling
    spec.kind.configure(config, [ex.label for ex in data.split("train")])

    config.architectures = [task_model_class(config).__name__]
    return config


def build_task_model(cfg: FinetuneConfig, spec: TaskSpec, data: TaskData, seed: int):
    """(model, tokenizer, source description) for a pre-trained dir or Hub id, scratch:DIR or scratch + preset."""
    from transformers import AutoConfig

    pooling = cfg.pooling or ("mean" if cfg.freeze else "cls")
    torch.manual_seed(derive_seed(seed, 11))
    if cfg.model == "scratch":
        if not cfg.tokenizer:
            raise ProtlmError("--model scratch needs --tokenizer (or use scratch:PRETRAINED_DIR for its architecture)")
        tokenizer = load_tokenizer(cfg.tokenizer)
        preset = load_preset(cfg.preset)
        kind = preset.pop("model_type")
        config = AutoConfig.for_model(kind, **preset, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
        config = _task_config(config, spec, data, pooling)
        check_model_size(config, cfg.preset)
        return task_model_class(config)(config), tokenizer, f"scratch ({cfg.preset})"
    scratch = cfg.model.startswith("scratch:")
    md = open_model(cfg.model.removeprefix("scratch:"))
    if md.task is not None:
        raise ProtlmError(f"{md.spec}: already a fine-tuned model; --model takes a pre-trained model (or --resume)")
    tokenizer = md.tokenizer()
    config = _task_config(md.config(), spec, data, pooling)
    if scratch:
        check_model_size(config, md.path / "config.json")
        return task_model_class(config)(config), tokenizer, f"scratch (architecture of {md.spec})"
    with quiet_hf():  # the head is new by design: report what matters ourselves
        model, loading = md.task_model(config, output_loading_info=True)
    missing = [k for k in loading["missing_keys"] if k.startswith(f"{model.base_model_prefix}.")]
    missing = [k for k in missing if not k.endswith(("position_ids", "contact_head.regression.weight",
                                                     "contact_head.regression.bias"))]  # fmt: skip
    if missing:
        raise ProtlmError(f"{md.spec}: encoder weights missing from the checkpoint ({', '.join(missing[:3])}, ...)")
    return model, tokenizer, md.spec


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


def fit_baseline(cfg: FinetuneConfig, spec: TaskSpec, data: TaskData, train: list, seed: int, info: dict,
                 run_dir: Path, log: Callable[[str], None]) -> Path:  # fmt: skip
    """`--model baseline`: fit the composition reference on `train`; returns the saved model directory."""
    t0 = time.perf_counter()
    model = Baseline(spec.kind, spec.kind.n_outputs(data.labels), spec.symmetric)
    model.fit(train, seed, "balanced" if cfg.weighted_loss else None)
    out = run_dir / "model"
    model.save(out, {**info, "model_source": "baseline", "train_seconds": time.perf_counter() - t0})
    log(f"composition baseline fitted on {len(train):,} examples in {time.perf_counter() - t0:.0f}s -> {out}")
    return out


def run_info(cfg: FinetuneConfig, spec: TaskSpec, data: TaskData, seed: int) -> dict:
    """What `task.json` records about one seed's run: task, labels, data options, seed and the full config."""
    data_opts = {k: getattr(cfg, k) for k in ("data", "background", "sequences", "split_seed", "strict")}
    return {"task": spec.name, "kind": spec.kind.name, "labels": list(data.labels), "data": data_opts, "seed": seed,
            "config": asdict(cfg)}  # fmt: skip


def train_one(
    cfg: FinetuneConfig, spec: TaskSpec, data: TaskData, seed: int, run_dir: Path, log: Callable[[str], None]
) -> Path:
    """Fine-tune (or fit the baseline) for one seed; returns the saved model directory."""
    info = run_info(cfg, spec, data, seed)
    train = subsample(data.split("train"), cfg.train_limit, derive_seed(seed, 13))
    if cfg.model == "baseline":
        return fit_baseline(cfg, spec, data, train, seed, info, run_dir, log)

    accelerator = make_accelerator(cfg.device)
    ckpts = checkpoints(run_dir)
    if ckpts and not cfg.resume:
        raise ProtlmError(f"{run_dir} already holds checkpoints: pass --resume to continue it, or choose a new --out")
    if cfg.freeze and cfg.lora_rank:
        raise ProtlmError("--freeze and --lora-rank exclude each other: a frozen encoder has no adapters to train")
    if ckpts and not cfg.lora_rank:  # resume: the newest checkpoint's weights; the loop restores the rest
        _, model, tokenizer, _ = load_finetuned(ckpts[-1], info_from=run_dir / "model", need_info=False)
        source = f"{cfg.model} (resumed from {ckpts[-1].name})"
    else:  # with LoRA the base is rebuilt and the checkpoint's adapters loaded into it below
        model, tokenizer, source = build_task_model(cfg, spec, data, seed)
    if cfg.freeze:
        model.base_model.requires_grad_(False)
    configure(model, cfg, train=head_prefixes(model), base=cfg.model)
    if ckpts and cfg.lora_rank:
        load_lora_checkpoint(model, ckpts[-1])
        source = f"{cfg.model} (LoRA, resumed from {ckpts[-1].name})"
    max_tokens = window_tokens(model.config, cfg.max_tokens)
    ts_train = build_taskset(spec.kind, train, tokenizer, max_tokens, cfg.cache_dir)
    ts_dev = build_taskset(spec.kind, data.split("dev"), tokenizer, max_tokens, cfg.cache_dir)
    batch_size = cfg.batch_size or spec.batch_size
    src = TaskSource(ts_train, cfg.tokens_per_batch, batch_size, seed)
    per_step = accelerator.num_processes * cfg.grad_accum
    steps_per_epoch = max(1, len(src.epoch_batches(0)) // per_step)
    total = cfg.max_steps if cfg.max_steps is not None else math.ceil((cfg.max_epochs or 1.0) * steps_per_epoch)
    loop_cfg = TrainConfig(**{k: getattr(cfg, k) for k in TrainConfig.__dataclass_fields__})
    loop_cfg.out, loop_cfg.seed = str(run_dir), seed
    loop_cfg.warmup_steps = cfg.warmup_steps or int(cfg.warmup_ratio * total)
    weights = (
        spec.kind.class_weights([ex.label for ex in data.split("train")], data.labels) if cfg.weighted_loss else None
    )
    objective = TaskObjective(model, weights, cfg.freeze)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(
        f"{spec.name}: {len(train):,} train / {len(ts_dev):,} dev examples; model {source} "
        f"({n_train / 1e6:.2f}M trainable parameters{', encoder frozen' if cfg.freeze else ''}"
        f"{f', LoRA rank {cfg.lora_rank}' if cfg.lora_rank else ''}); "
        f"{steps_per_epoch:,} steps/epoch, {total:,} steps"
    )

    # Dev metric while training on at most DEV_MONITOR examples (the full splits are scored at the end).
    monitor = ts_dev
    if len(ts_dev) > DEV_MONITOR:
        monitor = build_taskset(
            spec.kind, subsample(data.split("dev"), DEV_MONITOR, 0), tokenizer, max_tokens, cfg.cache_dir
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


def finetune(cfg: FinetuneConfig, log: Callable[[str], None] = print) -> dict:
    """Train and evaluate every seed into `out/seed-K`; write `out/summary.json` (mean +- std)."""
    with run_lock(cfg.out, "finetune"):  # one run per --out
        return _finetune(cfg, log)


def _finetune(cfg: FinetuneConfig, log: Callable[[str], None]) -> dict:
    spec = get_task(cfg.task)
    data = load_task_data(spec, cfg.data, cfg.split_seed, cfg.strict, cfg.background, cfg.sequences)
    for r in data.reports:
        log(r.summary())
    log(f"{spec.name} splits: " + ", ".join(f"{k} {len(v):,}" for k, v in data.splits.items()))
    data.require(list(data.splits))
    out = Path(cfg.out)
    if not cfg.resume:
        held = [out / f"seed-{s}" for s in cfg.seeds if checkpoints(out / f"seed-{s}")]
        if held:
            raise ProtlmError(
                f"{held[0]} already holds checkpoints: pass --resume to continue it, or choose a new --out"
            )
    save_config(cfg, out / RUN_CONFIG)  # what --resume restores
    write_json(out / "data_summary.json", data.summary())
    per_seed = {}
    for seed in cfg.seeds:
        run_dir = out / f"seed-{seed}"
        model_dir = train_one(cfg, spec, data, seed, run_dir, log)
        per_seed[seed] = evaluate_model(model_dir, None, run_dir / "eval", data, cfg.tokens_per_batch, log, cfg.device)
    summary = summarize(spec, per_seed)
    write_json(out / "summary.json", summary)
    for split, scores in summary["splits"].items():
        log(
            f"{spec.name} {split} over seeds {cfg.seeds}: "
            + ", ".join(f"{k} {M.metric_text(k, v['mean'], v['std'])}" for k, v in scores.items())
        )
    for split, seeds in summary["constant"].items():
        log(f"{spec.name} {split}: " + "; ".join(f"seed {seed} {note}" for seed, note in seeds.items()))
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
    constant = {split: {seed: r["splits"][split]["constant"] for seed, r in per_seed.items()
                        if r["splits"][split].get("constant")} for split in first["splits"]}  # fmt: skip
    return {"task": spec.name, "seeds": list(per_seed), "model_source": first["model_source"], "splits": splits,
            "constant": {split: seeds for split, seeds in constant.items() if seeds}}  # fmt: skip
