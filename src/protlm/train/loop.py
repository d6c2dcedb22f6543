"""The training loop shared by pre-training and fine-tuning (in the spirit of nanoGPT's train.py).

Visible parts: AdamW (betas 0.9/0.98, eps 1e-6, weight decay 0.01 as in the paper), linear
warmup then linear decay as a pure function of the step, explicit gradient accumulation,
clipping, bf16 autocast, budgets (steps / epochs / wall time), periodic evaluation, atomic
checkpoints and exact resume. Accelerate provides the process group (single process, DDP, FSDP).

Determinism: the batches of an epoch are a pure function of (seed, epoch); batch k of an epoch
is masked with a generator seeded by (seed, epoch, k); the global RNG is re-seeded from
(seed, step, rank) before each step (dropout). So an interrupted and resumed run replays exactly
the same computation, and a DDP run sees the same batches as one process accumulating them.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from protlm.device import autocast_dtype, to_device
from protlm.heap import HeapTrim
from protlm.models.kernels import training_kernels
from protlm.models.lora import adapter_files, has_lora, merge_lora
from protlm.progress import progress
from protlm.train.checkpoint import checkpoints, load_training_state, save_checkpoint, save_model_atomic
from protlm.train.config import TrainConfig, parse_duration
from protlm.train.faults import fault
from protlm.train.metrics import MetricsLogger, truncate_metrics


class StepSource(Protocol):
    """What the loop needs from the data: deterministic epoch plans and batch construction."""

    def epoch_batches(self, epoch: int) -> list[Any]: ...

    def make_batch(self, items: Any, generator: torch.Generator) -> Any: ...


@dataclass
class LoopState:
    step: int = 0
    epoch: int = 0
    batch: int = 0  # next batch index within the epoch's plan
    tokens: int = 0  # real tokens trained on
    elapsed: float = 0.0  # seconds of training, summed over resumed segments
    stopped_by: str = ""


def derive_seed(*keys: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def lr_multiplier(step: int, warmup: int, total: int) -> float:
    """Linear warmup over `warmup` steps, then linear decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


class Prefetch:
    """Builds the next micro-batch in a background thread while the current one trains (`--prefetch on`;
    off by default: within noise on 2 CPU cores and on an H100, bench/RESULTS.md).

    A batch is a pure function of (epoch, index) and its own generator, so prefetching changes timing
    only: a key that was not prefetched (a new epoch, a resume) is built in place."""

    def __init__(self, make_batch: Callable[[Any, torch.Generator], Any], enabled: bool):
        from concurrent.futures import ThreadPoolExecutor

        self.make_batch = make_batch
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="protlm-prefetch") if enabled else None
        self.pending: tuple[Any, Any] | None = None

    def ahead(self, key: tuple[int, int], plan, generator: Callable[[int, int], torch.Generator]) -> None:
        """Start building batch `key` = (epoch, index) of `plan`."""
        if self.pool is not None:
            self.pending = (key, self.pool.submit(self.make_batch, plan[key[1]], generator(*key)))

    def take(self, key: tuple[int, int], plan, generator: Callable[[int, int], torch.Generator]):
        """Batch `key`: the prefetched one when it was asked for ahead, else built now."""
        pending, self.pending = self.pending, None
        if pending is not None and pending[0] == key:
            return pending[1].result()
        return self.make_batch(plan[key[1]], generator(*key))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and LayerNorm weights (as in BERT/RoBERTa)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps)


@dataclass
class Fit:
    """Everything the loop runs on; `objective(**batch_fields) -> (loss, n)`."""

    objective: nn.Module
    hf_model: nn.Module  # what is saved: objective's HF model
    tokenizer: Any
    source: StepSource
    cfg: TrainConfig
    run_dir: Path
    accelerator: Any
    evaluate: Callable[[nn.Module], dict] | None = None
    batch_fields: Callable[[Any], dict] = lambda b: {
        "input_ids": b.input_ids,
        "attention_mask": b.attention_mask,
        "labels": b.labels,
    }
    extra_files: Callable[[], dict] | None = None  # files written into the final model dir


def fit(f: Fit, total_steps: int, steps_per_epoch: int, log: Callable[[str], None] = print) -> LoopState:
    """Train until a budget is reached; returns the final loop state. The HF model trains with protlm's
    CPU kernels (`--kernels on`, models/kernels.py) and is saved as the plain HF model it was."""
    with training_kernels(f.hf_model, enabled=f.cfg.kernels == "on"):
        return _fit(f, total_steps, steps_per_epoch, log)


def _fit(f: Fit, total_steps: int, steps_per_epoch: int, log: Callable[[str], None]) -> LoopState:
    cfg, acc = f.cfg, f.accelerator
    heap = HeapTrim()  # batch shapes change every step: free heap pages go back to the system (heap.py)
    world, rank = acc.num_processes, acc.process_index
    per_step = world * cfg.grad_accum
    max_time = parse_duration(cfg.max_time)
    dtype = autocast_dtype(cfg.precision, acc.device)

    optimizer = make_optimizer(f.objective, cfg)
    state = LoopState()
    ckpts = checkpoints(f.run_dir) if cfg.resume else []
    if ckpts:
        saved = load_training_state(ckpts[-1], optimizer)
        state = LoopState(**{k: v for k, v in saved.items() if k in LoopState.__dataclass_fields__})
        log(f"resumed from {ckpts[-1]} at step {state.step}")
        if acc.is_main_process:
            truncate_metrics(f.run_dir, state.step)
    objective, optimizer = acc.prepare(f.objective, optimizer)
    metrics = MetricsLogger(f.run_dir, enabled=acc.is_main_process)

    def evaluate() -> None:
        if f.evaluate is not None:
            objective.eval()
            with (
                torch.inference_mode(),
                torch.autocast(acc.device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
            ):
                result = f.evaluate(objective)
            objective.train()
            metrics.log({"step": state.step, **result})
            log(f"step {state.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))

    def checkpoint() -> None:
        acc.wait_for_everyone()
        sd = _unwrapped_state_dict(acc, objective, world)
        if acc.is_main_process:
            save_checkpoint(
                f.run_dir, state.step, f.hf_model, f.tokenizer, optimizer, asdict(state), sd, cfg.keep_checkpoints
            )
        acc.wait_for_everyone()

    if state.step == 0:
        evaluate()
    progress = _progress(total_steps, state.step, acc.is_main_process)
    objective.train()

    def new_window() -> dict:  # the loss is summed on the device and read once per log line: no sync per step
        return {"loss": torch.zeros((), device=acc.device), "n": 0, "tokens": 0, "padded": 0, "t": time.perf_counter()}

    window = new_window()
    segment_start = time.perf_counter() - state.elapsed
    plan = f.source.epoch_batches(state.epoch)
    prefetch = Prefetch(f.source.make_batch, cfg.prefetch == "on")

    def generator(epoch: int, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(derive_seed(cfg.seed, 4, epoch, index))

    while True:
        # Budgets, decided identically on every rank.
        state.elapsed = time.perf_counter() - segment_start
        stop = _budget_reached(state, cfg, total_steps, max_time, steps_per_epoch)
        if world > 1 and max_time is not None:  # one rank over its time budget stops them all at the same step
            flag = torch.tensor([1.0 if stop else 0.0], device=acc.device)
            if acc.reduce(flag, reduction="sum").item() > 0 and not stop:
                stop = "max_time"
        if stop:
            state.stopped_by = stop
            break
        if state.batch + per_step > len(plan):  # epoch done (a partial last step is not taken)
            state.epoch, state.batch = state.epoch + 1, 0
            plan = f.source.epoch_batches(state.epoch)
            continue

        torch.manual_seed(derive_seed(cfg.seed, 3, state.step, rank))
        mine = list(range(rank, per_step, world))  # this rank's micro-batches of the step
        step_loss = torch.zeros((), device=acc.device)
        for k, j in enumerate(mine):
            i = state.batch + j
            batch = prefetch.take((state.epoch, i), plan, generator)
            if i + world < len(plan):  # this rank's next micro-batch: the same step's, or the next step's
                prefetch.ahead((state.epoch, i + world), plan, generator)
            sync = contextlib.nullcontext() if k == len(mine) - 1 else acc.no_sync(objective)
            with sync:
                with torch.autocast(acc.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss, _ = objective(**to_device(f.batch_fields(batch), acc.device))
                acc.backward(loss / cfg.grad_accum)
            step_loss += loss.detach() / cfg.grad_accum
            window["tokens"] += batch.n_tokens
            window["padded"] += batch.n_padded
        if cfg.max_grad_norm > 0:
            acc.clip_grad_norm_(objective.parameters(), cfg.max_grad_norm)
        lr = cfg.lr * lr_multiplier(state.step, cfg.warmup_steps, total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr  # the schedule is a pure function of the step: nothing else to save
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        heap.step()
        state.step += 1
        state.batch += per_step
        window["loss"] += step_loss
        window["n"] += 1
        progress.update(1)

        if state.step % cfg.log_every == 0 or state.step == total_steps:
            tokens = (
                int(acc.reduce(torch.tensor(window["tokens"], device=acc.device), reduction="sum"))
                if world > 1
                else window["tokens"]
            )
            dt = time.perf_counter() - window["t"]
            state.tokens += tokens
            record = {
                "step": state.step,
                "epoch": state.epoch + state.batch / max(1, len(plan)),
                "loss": float(acc.reduce(window["loss"], reduction="mean") if world > 1 else window["loss"])
                / window["n"],
                "lr": lr,
                "tokens_per_s": tokens / max(dt, 1e-9),
                "pad_waste_pct": 100.0 * (1 - window["tokens"] / max(1, window["padded"])),
                "tokens": state.tokens,
                "elapsed_s": time.perf_counter() - segment_start,
            }
            metrics.log(record)
            progress.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}")
            window = new_window()
        if state.step % cfg.eval_every == 0:
            evaluate()
        fault("step", state.step)
        if state.step % cfg.save_every == 0:
            checkpoint()

    progress.close()
    prefetch.close()
    if state.step % cfg.eval_every:
        evaluate()
    checkpoint()
    acc.wait_for_everyone()
    sd = _unwrapped_state_dict(acc, objective, world)
    if acc.is_main_process:
        extra = dict(f.extra_files() if f.extra_files else {})
        if has_lora(f.hf_model):  # the adapter on its own (PEFT format), then merged into the weights
            extra |= adapter_files(f.hf_model)
            merge_lora(f.hf_model)
            sd = None
        save_model_atomic(f.run_dir / "model", f.hf_model, f.tokenizer, sd, extra)
    metrics.close()
    log(f"stopped by {state.stopped_by} at step {state.step} ({state.elapsed:.0f}s); model -> {f.run_dir / 'model'}")
    return state


def _unwrapped_state_dict(acc, objective: nn.Module, world: int) -> dict | None:
    """Full state dict of the HF model inside the (DDP/FSDP-wrapped) objective; None = use the model's own."""
    if world == 1:
        return None
    full = acc.get_state_dict(objective)
    return {k.removeprefix("model."): v for k, v in full.items() if k.startswith("model.")}


def _budget_reached(state: LoopState, cfg: TrainConfig, total: int, max_time: float | None, spe: int) -> str:
    if state.step >= total:
        return "max_steps" if cfg.max_steps is not None and state.step >= cfg.max_steps else "max_epochs"
    if cfg.max_epochs is not None and state.step >= math.ceil(cfg.max_epochs * spe):
        return "max_epochs"
    if max_time is not None and state.elapsed >= max_time:
        return "max_time"
    return ""


def _progress(total: int, initial: int, enabled: bool):
    return progress(total=total, initial=initial, unit="step", enabled=enabled)
