"""The training loop shared by pre-training and fine-tuning (in the spirit of nanoGPT's train.py).

Visible parts: AdamW (betas 0.9/0.98, eps 1e-6, weight decay 0.01 as in the paper), linear
warmup then linear decay as a pure function of the step, explicit gradient accumulation,
clipping, bf16 autocast, budgets (steps / epochs / wall time), periodic evaluation, atomic
checkpoints and exact resume. Accelerate provides the process group (single process, DDP, FSDP).
One optimizer step is `train_step` (forward, backward, accumulation, clipping, schedule, AdamW):
`_fit` is the driver around it, and the benchmarks time the same function.

Determinism: the batches of an epoch are a pure function of (seed, epoch); batch k of an epoch
is masked with a generator seeded by (seed, epoch, k); the global RNG is re-seeded from
(seed, step, rank) before each step (dropout). So an interrupted and resumed run replays exactly
the same computation, and a DDP run sees the same batches as one process accumulating them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from protlm.device import autocast, autocast_dtype, to_device
from protlm.errors import ProtlmError, Stopped
from protlm.heap import HeapTrim
from protlm.models.kernels import training_kernels
from protlm.models.lora import adapter_files, has_lora, merge_lora
from protlm.progress import progress
from protlm.train.budget import PrecisionCache, faster_step_dtype
from protlm.train.checkpoint import checkpoints, load_training_state, save_checkpoint, save_model_atomic
from protlm.train.config import TrainConfig, parse_duration
from protlm.train.faults import fault
from protlm.train.metrics import MetricsLogger, truncate_metrics
from protlm.train.stopping import SIGNALS, StopSignals, stop_reason


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
    precision: str = ""  # the autocast the run chose (fp32 / bf16), kept so that a resumed run computes the same


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


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device | None = None) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and LayerNorm weights (as in BERT/RoBERTa). On CUDA the fused
    kernel (one launch for all parameters, the step count on the device: no host sync), elsewhere
    PyTorch's default (foreach)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = True if device is not None and device.type == "cuda" else None
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, fused=fused)


def mlm_fields(batch) -> dict[str, torch.Tensor | None]:
    """The tensors of an MLM batch that the objective takes: no attention mask when no row is padded,
    and the scored positions as indices (both known on the host: no device sync in the step); packed
    rows bring their segments and positions."""
    fields = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask if batch.padded_rows else None,
              "labels": batch.labels, "masked_index": batch.masked_index}  # fmt: skip
    if getattr(batch, "segments", None) is not None:  # packed rows: the objective builds the block mask
        fields.update(attention_mask=None, segments=batch.segments, position_ids=batch.position_ids)
    return fields


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
    batch_fields: Callable[[Any], dict] = mlm_fields
    extra_files: Callable[[], dict] | None = None  # files written into the final model dir


def kernels_on(choice: str, device: torch.device) -> bool:
    """`--kernels auto` is on where they were made for and measured: the CPU."""
    return choice == "on" or (choice == "auto" and device.type == "cpu")


def fit(f: Fit, total_steps: int, steps_per_epoch: int, log: Callable[[str], None] = print) -> LoopState:
    """Train until a budget is reached; returns the final loop state. The HF model trains with protlm's
    CPU kernels (`--kernels`, models/kernels.py: by default on the CPU only) and is saved as the plain HF
    model it was. SIGTERM or SIGINT ends the step under way, saves a checkpoint and raises `Stopped`."""
    with training_kernels(f.hf_model, enabled=kernels_on(f.cfg.kernels, f.accelerator.device)), StopSignals() as sig:
        return _fit(f, total_steps, steps_per_epoch, log, sig)


@dataclass
class StepSetup:
    """What one optimizer step runs on: the objective and optimizer as Accelerate prepared them."""

    objective: nn.Module  # `objective(**batch_fields(batch)) -> (loss, n)`
    optimizer: torch.optim.Optimizer
    accelerator: Any
    cfg: TrainConfig
    total_steps: int  # the schedule's horizon
    dtype: torch.dtype | None  # autocast dtype (device.autocast_dtype); None = fp32
    batch_fields: Callable[[Any], dict] = mlm_fields


@dataclass
class StepResult:
    loss: torch.Tensor  # this rank's loss of the step (mean over its micro-batches), on the device: no sync
    lr: float
    tokens: int  # real tokens of this rank's micro-batches
    padded: int  # their padded size


def train_step(s: StepSetup, step: int, micro_batches: Iterable[Any]) -> StepResult:
    """Optimizer step `step`, as the loop, the tests and the benchmarks run it: dropout seeded by
    (seed, step, rank); this rank's `grad_accum` micro-batches forward under autocast and backward
    (gradients synchronised across ranks on the last one only); clipping; the LR of `step` (a pure
    function of the step: nothing else to save); AdamW; gradients freed. `micro_batches` is read lazily,
    one batch at a time, after the seeding."""
    acc, cfg = s.accelerator, s.cfg
    torch.manual_seed(derive_seed(cfg.seed, 3, step, acc.process_index))
    step_loss = torch.zeros((), device=acc.device)
    tokens = padded = 0
    for k, batch in enumerate(micro_batches):
        sync = contextlib.nullcontext() if k == cfg.grad_accum - 1 else acc.no_sync(s.objective)
        with sync:
            with autocast(acc.device, s.dtype):
                loss, _ = s.objective(**to_device(s.batch_fields(batch), acc.device))
            acc.backward(loss / cfg.grad_accum)
        step_loss += loss.detach() / cfg.grad_accum
        tokens, padded = tokens + batch.n_tokens, padded + batch.n_padded
    if cfg.max_grad_norm > 0:
        acc.clip_grad_norm_(s.objective.parameters(), cfg.max_grad_norm)
    lr = cfg.lr * lr_multiplier(step, cfg.warmup_steps, s.total_steps)
    for group in s.optimizer.param_groups:
        group["lr"] = lr
    s.optimizer.step()
    s.optimizer.zero_grad(set_to_none=True)
    return StepResult(step_loss, lr, tokens, padded)


@dataclass
class _Window:
    """The steps since the last log line. The loss is summed on the device and read once per line."""

    loss: torch.Tensor
    n: int = 0
    tokens: int = 0
    padded: int = 0
    t: float = field(default_factory=time.perf_counter)

    def add(self, r: StepResult) -> None:
        self.tokens, self.padded = self.tokens + r.tokens, self.padded + r.padded
        self.loss += r.loss
        self.n += 1


def _fit(f: Fit, total_steps: int, steps_per_epoch: int, log: Callable[[str], None], sig: StopSignals) -> LoopState:
    cfg, acc = f.cfg, f.accelerator
    # batch shapes change every step: free host heap pages go back to the system (heap.py); on a GPU the
    # activations are not on the host heap, and a trim costs tens of ms a call
    heap = HeapTrim(enabled=acc.device.type == "cpu")
    world, rank = acc.num_processes, acc.process_index
    per_step = world * cfg.grad_accum
    max_time = parse_duration(cfg.max_time)
    optimizer = make_optimizer(f.objective, cfg, acc.device)
    state = _resume(f, optimizer, log)
    objective, optimizer = acc.prepare(f.objective, optimizer)
    dtype = _step_dtype(f, objective, state, log)
    setup = StepSetup(objective, optimizer, acc, cfg, total_steps, dtype, f.batch_fields)
    metrics = MetricsLogger(f.run_dir, enabled=acc.is_main_process)

    def evaluate() -> None:
        if f.evaluate is not None:
            result = _evaluate(setup, f.evaluate)
            metrics.log({"step": state.step, **result})
            log(f"step {state.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))

    if state.step == 0:
        evaluate()
    progress = _progress(total_steps, state.step, acc.is_main_process)
    objective.train()
    window = _Window(torch.zeros((), device=acc.device))
    segment_start = time.perf_counter() - state.elapsed
    plan = f.source.epoch_batches(state.epoch)
    prefetch = Prefetch(f.source.make_batch, cfg.prefetch == "on")

    def generator(epoch: int, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(derive_seed(cfg.seed, 4, epoch, index))

    def micro_batches(epoch: int, first: int, plan: list) -> Iterator[Any]:  # this rank's, of the step at `first`
        for i in range(first + rank, first + per_step, world):
            batch = prefetch.take((epoch, i), plan, generator)
            if i + world < len(plan):  # this rank's next micro-batch: the same step's, or the next step's
                prefetch.ahead((epoch, i + world), plan, generator)
            yield batch

    while True:
        state.elapsed = time.perf_counter() - segment_start
        if stop := stop_reason(state, cfg, total_steps, max_time, steps_per_epoch, acc, sig.name):
            state.stopped_by = stop
            break
        if state.batch + per_step > len(plan):  # epoch done (a partial last step is not taken)
            state.epoch, state.batch = state.epoch + 1, 0
            plan = f.source.epoch_batches(state.epoch)
            continue
        try:
            result = train_step(setup, state.step, micro_batches(state.epoch, state.batch, plan))
        except torch.OutOfMemoryError:
            raise _out_of_memory(f, state, plan) from None
        heap.step()
        state.step += 1
        state.batch += per_step
        window.add(result)
        progress.update(1)
        if state.step % cfg.log_every == 0 or state.step == total_steps:
            record = _log_line(acc, window, state, len(plan), result.lr, segment_start)
            metrics.log(record)
            progress.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}")
            window = _Window(torch.zeros((), device=acc.device))
        if state.step % cfg.eval_every == 0:
            evaluate()
        fault("step", state.step)
        if state.step % cfg.save_every == 0:
            _checkpoint(f, setup, state)

    progress.close()
    prefetch.close()
    return _finish(f, setup, state, metrics, evaluate, log)


def _finish(f: Fit, setup: StepSetup, state: LoopState, metrics: MetricsLogger, evaluate: Callable[[], None],
            log: Callable[[str], None]) -> LoopState:  # fmt: skip
    """After the last step: a final evaluation, checkpoint and model; pre-empted (a signal), the checkpoint
    only, then `Stopped`."""
    if state.stopped_by in SIGNALS:
        _checkpoint(f, setup, state)
        metrics.close()
        raise Stopped(f"stopped by {state.stopped_by} at step {state.step} after finishing it; checkpoint "
                      f"{f.run_dir / 'checkpoints'} saved: --resume continues from it")  # fmt: skip
    if state.step % f.cfg.eval_every:
        evaluate()
    _checkpoint(f, setup, state)
    _save_model(f, setup.objective)
    metrics.close()
    log(f"stopped by {state.stopped_by} at step {state.step} ({state.elapsed:.0f}s); model -> {f.run_dir / 'model'}")
    return state


def _step_dtype(f: Fit, objective: nn.Module, state: LoopState, log: Callable[[str], None]) -> torch.dtype | None:
    """The run's autocast dtype: a resumed run's own; `--precision fp32 | bf16` as asked; `auto` bf16 on GPUs
    that support it, and on a CPU with bf16 units only when the model's own forward and backward on the run's
    first batch measure faster in bf16 (a bf16 matmul can win while the step loses: the casts and the
    elementwise work of a small model). Rank 0 measures; every rank takes its choice."""
    acc, cfg = f.accelerator, f.cfg
    if state.precision:
        return torch.bfloat16 if state.precision == "bf16" else None
    dtype = autocast_dtype(cfg.precision, acc.device)
    if cfg.precision == "auto" and dtype is not None and acc.device.type == "cpu":
        batch = f.source.make_batch(f.source.epoch_batches(0)[0], torch.Generator().manual_seed(0))
        fields = to_device(f.batch_fields(batch), acc.device)
        cache = PrecisionCache(getattr(cfg, "cache_dir", None))
        key = cache.key(objective, fields)
        known = cache.get(key)
        if known is not None:
            chosen = torch.bfloat16 if known == "bf16" else None
        else:
            chosen = faster_step_dtype(objective, fields, acc.device, acc.no_sync)
            if acc.is_main_process:
                cache.put(key, "bf16" if chosen is not None else "fp32")
        if acc.num_processes > 1:
            from accelerate.utils import broadcast

            flag = torch.tensor([1.0 if chosen is not None else 0.0], device=acc.device)
            chosen = torch.bfloat16 if float(broadcast(flag, from_process=0)[0]) > 0 else None
        dtype = chosen
        how = f"measured before on this machine, {cache.path}" if known is not None else "measured now"
        log(f"--precision auto: {'bf16' if dtype is not None else 'fp32'} (the faster step on this CPU, {how})")
    state.precision = "bf16" if dtype is not None else "fp32"
    return dtype


def _out_of_memory(f: Fit, state: LoopState, plan: list) -> ProtlmError:
    """One line: the step and the largest batch it held, what to lower, and the checkpoint left intact."""
    cfg, per_step = f.cfg, f.accelerator.num_processes * f.cfg.grad_accum
    items = [len(plan[i]) for i in range(state.batch, min(state.batch + per_step, len(plan)))]
    ckpts = checkpoints(f.run_dir)
    kept = f"{ckpts[-1]} is intact (--resume continues from it)" if ckpts else "no checkpoint was written yet"
    return ProtlmError(
        f"out of memory on {f.accelerator.device} at step {state.step} (micro-batches of up to {max(items, default=0)} "
        f"sequences, --tokens-per-batch {cfg.tokens_per_batch}): lower --tokens-per-batch or --max-tokens, and raise "
        f"--grad-accum (or set --tokens-per-step) to keep the tokens per step; {kept}"
    )


def _resume(f: Fit, optimizer: torch.optim.Optimizer, log: Callable[[str], None]) -> LoopState:
    """The newest checkpoint's loop state, its optimizer state loaded into `optimizer`; a fresh state
    when not resuming or when there is none. Metrics past the checkpoint's step are dropped."""
    ckpts = checkpoints(f.run_dir) if f.cfg.resume else []
    if not ckpts:
        return LoopState()
    saved = load_training_state(ckpts[-1], optimizer)
    state = LoopState(**{k: v for k, v in saved.items() if k in LoopState.__dataclass_fields__})
    for name, default in asdict(LoopState()).items():  # a run dir may come from someone else
        value = getattr(state, name)
        if type(value) is not type(default) and not (type(default) is float and type(value) is int):
            raise ProtlmError(
                f"{ckpts[-1]}: not a checkpoint this run can resume ({name} is not a {type(default).__name__})"
            )
    if state.precision not in ("", "fp32", "bf16"):
        raise ProtlmError(f"{ckpts[-1]}: not a checkpoint this run can resume (precision is not fp32 or bf16)")
    log(f"resumed from {ckpts[-1]} at step {state.step}")
    if f.accelerator.is_main_process:
        truncate_metrics(f.run_dir, state.step)
    return state


def _checkpoint(f: Fit, s: StepSetup, state: LoopState) -> None:
    """Model, optimizer and loop state at `state.step`, written by the main process once all ranks are there."""
    acc = s.accelerator
    acc.wait_for_everyone()
    sd = _unwrapped_state_dict(acc, s.objective, acc.num_processes)
    if acc.is_main_process:
        save_checkpoint(
            f.run_dir, state.step, f.hf_model, f.tokenizer, s.optimizer, asdict(state), sd, f.cfg.keep_checkpoints
        )
    acc.wait_for_everyone()


def _evaluate(s: StepSetup, evaluate: Callable[[nn.Module], dict]) -> dict:
    """`evaluate(objective)` in eval mode, without gradients, under the training autocast."""
    s.objective.eval()
    with torch.inference_mode(), autocast(s.accelerator.device, s.dtype):
        result = evaluate(s.objective)
    s.objective.train()
    return result


def _log_line(acc, window: _Window, state: LoopState, plan_len: int, lr: float, segment_start: float) -> dict:
    """The metrics record of `window` (loss averaged and tokens summed over ranks); adds the window's
    tokens to `state.tokens`."""
    world = acc.num_processes
    tokens = (
        int(acc.reduce(torch.tensor(window.tokens, device=acc.device), reduction="sum")) if world > 1 else window.tokens
    )
    dt = time.perf_counter() - window.t
    state.tokens += tokens
    return {
        "step": state.step,
        "epoch": state.epoch + state.batch / max(1, plan_len),
        "loss": float(acc.reduce(window.loss, reduction="mean") if world > 1 else window.loss) / window.n,
        "lr": lr,
        "tokens_per_s": tokens / max(dt, 1e-9),
        "pad_waste_pct": 100.0 * (1 - window.tokens / max(1, window.padded)),
        "tokens": state.tokens,
        "elapsed_s": time.perf_counter() - segment_start,
    }


def _save_model(f: Fit, objective: nn.Module) -> None:
    """The final model into `run_dir/model`: plain HF weights (LoRA merged, its adapter saved beside) and
    the run's extra files."""
    acc = f.accelerator
    acc.wait_for_everyone()
    sd = _unwrapped_state_dict(acc, objective, acc.num_processes)
    if acc.is_main_process:
        extra = dict(f.extra_files() if f.extra_files else {})
        if has_lora(f.hf_model):  # the adapter on its own (PEFT format), then merged into the weights
            extra |= adapter_files(f.hf_model)
            merge_lora(f.hf_model)
            sd = None
        save_model_atomic(f.run_dir / "model", f.hf_model, f.tokenizer, sd, extra)


def _unwrapped_state_dict(acc, objective: nn.Module, world: int) -> dict | None:
    """Full state dict of the HF model inside the (DDP/FSDP-wrapped) objective; None = use the model's own."""
    if world == 1:
        return None
    full = acc.get_state_dict(objective)
    return {k.removeprefix("model."): v for k, v in full.items() if k.startswith("model.")}


def _progress(total: int, initial: int, enabled: bool):
    return progress(total=total, initial=initial, unit="step", enabled=enabled)
