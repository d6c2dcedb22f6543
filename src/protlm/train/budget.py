"""What the step is sized and run in on the device, measured: `--tokens-per-batch auto`, `--tokens-per-step`,
and `--precision auto` on a CPU.

On the CPU `auto` is 8,192 tokens, the budget measured best on 2 cores (bench/RESULTS.md). On a GPU it
is measured once, before training: forward and backward on batches of the longest inputs (so every
shorter bucket fits too), doubling the budget while the peak memory stays under 85% of the device's,
up to `MAX_AUTO`. `--tokens-per-step` then sets the accumulation that reaches a target per optimizer
step, so that the optimisation does not change with the device's memory. A resumed run keeps the
budget its first segment chose (its batches must replay exactly).

On a CPU with bf16 units, `--precision auto` times the objective's own forward and backward on the run's
first batch in fp32 and bf16 (`faster_step_dtype`): a bf16 matmul can win while the step loses (the casts
and the elementwise work of a small model). The choice is kept per machine and step shape (`PrecisionCache`),
so that the same run started twice on one machine computes in the same precision, whatever the load was.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from protlm.device import autocast, autocast_dtype, faster_dtype, to_device

CPU_TOKENS_PER_BATCH = 8192
MAX_AUTO = 131_072  # more per micro-batch buys little once the GPU is busy; accumulate for more per step
HEADROOM = 0.15  # of the device's memory left free: allocator fragmentation, buckets of other shapes


def choose_tokens_per_batch(
    peak: Callable[[int], int | None], capacity: int, max_tokens: int, cap: int = MAX_AUTO, headroom: float = HEADROOM
) -> int:
    """The largest budget, a power-of-two multiple of `max_tokens` up to `cap`, whose `peak(budget)`
    (bytes; None = out of memory) stays within `(1 - headroom) * capacity`. At least one row."""
    allowed = (1 - headroom) * capacity
    best, budget = max_tokens, max_tokens
    while budget <= max(cap, max_tokens):
        used = peak(budget)
        if used is None or used > allowed:
            break
        best, budget = budget, budget * 2
    return best


def measure_peak(objective, device: torch.device, dtype, max_tokens: int, residue_ids: torch.Tensor) -> Callable:
    """`peak(budget)`: the peak bytes on `device` of one forward and backward of `objective` on
    budget // max_tokens rows of `max_tokens` random residue tokens (15% scored), or None on out of memory."""

    def peak(budget: int) -> int | None:
        rows = max(1, budget // max_tokens)
        gen = torch.Generator().manual_seed(0)
        ids = residue_ids[torch.randint(0, len(residue_ids), (rows, max_tokens), generator=gen)]
        labels = torch.where(torch.rand(ids.shape, generator=gen) < 0.15, ids, torch.full_like(ids, -100))
        fields = {"input_ids": ids, "attention_mask": None, "labels": labels,
                  "masked_index": (labels.reshape(-1) != -100).nonzero().squeeze(1)}  # fmt: skip
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        try:
            with autocast(device, dtype):
                loss, _ = objective(**to_device(fields, device))
            loss.backward()
            torch.cuda.synchronize(device)
            return int(torch.cuda.max_memory_allocated(device))
        except torch.OutOfMemoryError:
            return None
        finally:
            objective.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()

    return peak


def resolve_budget(cfg, accelerator, probe: Callable[[], int] | None, saved: int | None, log) -> None:
    """Turn `cfg.tokens_per_batch` (a number or `auto`) into a number, and `cfg.tokens_per_step` into
    `cfg.grad_accum`; in place. `probe()` measures the budget on a GPU (None: the CPU budget);
    `saved`: the budget of the run being resumed, kept as it was."""
    device = accelerator.device
    if cfg.tokens_per_batch == "auto":
        if saved is not None:
            cfg.tokens_per_batch = saved
        elif device.type != "cuda" or probe is None:
            cfg.tokens_per_batch = CPU_TOKENS_PER_BATCH
        else:
            chosen = probe()
            if accelerator.num_processes > 1:  # every rank plans the same batches: the smallest GPU decides
                chosen = int(accelerator.gather(torch.tensor([chosen], device=device)).min())
            cfg.tokens_per_batch = chosen
            log(f"--tokens-per-batch auto: {chosen:,} tokens (measured on {torch.cuda.get_device_name(device)})")
    if cfg.tokens_per_step is not None:  # per process, as --tokens-per-batch is
        cfg.grad_accum = max(1, math.ceil(cfg.tokens_per_step / cfg.tokens_per_batch))


def mlm_probe(
    objective, device: torch.device, precision: str, max_tokens: int, residue_ids: torch.Tensor
) -> Callable[[], int]:
    """The GPU budget of a masked-LM objective: `choose_tokens_per_batch` over its measured peaks, with
    the memory AdamW's two states will take set aside."""

    def probe() -> int:
        objective.to(device)
        n_params = sum(p.numel() for p in objective.parameters() if p.requires_grad)
        capacity = torch.cuda.get_device_properties(device).total_memory - 8 * n_params
        peak = measure_peak(objective, device, autocast_dtype(precision, device), max_tokens, residue_ids)
        return choose_tokens_per_batch(peak, capacity, max_tokens)

    return probe


def faster_step_dtype(objective, fields: dict, device: torch.device, no_sync) -> torch.dtype | None:
    """bf16, or None (fp32): the faster for the objective's forward and backward on `fields`
    (`device.faster_dtype`); its gradients are cleared after, and torch's RNG is left as it was (dropout)."""

    def run(dtype: torch.dtype | None) -> None:
        with autocast(device, dtype), no_sync(objective):
            objective(**fields)[0].backward()

    objective.train()
    with torch.random.fork_rng(devices=[]):  # the probe's dropout draws leave the run's stream as it was
        chosen = faster_dtype(run)
    objective.zero_grad(set_to_none=True)
    return chosen


class PrecisionCache:
    """`--precision auto` choices measured on this machine, by step: the CPU, torch, threads, model class and
    size and the batch's shape. A JSON file in the cache directory; unreadable or foreign content is ignored
    (measured again), and writes are atomic."""

    def __init__(self, cache_dir: str | Path | None):
        from protlm.tokenized import default_cache_dir

        self.path = Path(cache_dir or default_cache_dir()) / "precision.json"

    @staticmethod
    def key(objective, fields: dict) -> str:
        import platform

        cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name")),
                   platform.processor())  # fmt: skip
        n = sum(p.numel() for p in objective.parameters())
        shapes = ",".join(f"{k}{tuple(v.shape)}" for k, v in sorted(fields.items()) if hasattr(v, "shape"))
        return (
            f"{cpu}|torch {torch.__version__}|{torch.get_num_threads()} threads|{type(objective).__name__} {n}|{shapes}"
        )

    def get(self, key: str) -> str | None:
        from protlm.io.structured import read_json

        try:
            value = read_json(self.path).get(key)
        except Exception:  # noqa: BLE001 - a missing or damaged cache is measured again
            return None
        return value if value in ("fp32", "bf16") else None

    def put(self, key: str, value: str) -> None:
        from protlm.io.atomic import write_json
        from protlm.io.structured import read_json

        try:
            known = read_json(self.path)
            known = known if isinstance(known, dict) else {}
        except Exception:  # noqa: BLE001
            known = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, {**known, key: value})
        except OSError:  # a read-only cache: the choice is still logged and kept in the checkpoint
            pass


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
