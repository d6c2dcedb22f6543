"""The device: which one to run on, its dtype and autocast, its measured matmul peak and its free memory.

Everything that depends on the hardware lives here, so the rest of protlm asks one module:

- choice: `resolve_device(spec)` turns `auto | cpu | cuda | cuda:N` into a `torch.device` (`auto`: the
  first CUDA device when there is one, else the CPU); `make_accelerator()` builds the one
  `accelerate.Accelerator` of a training run on that choice; `describe_device` names it for `doctor`;
- precision: `autocast_dtype` picks fp32 or bf16 (*measured*: bf16 only where it runs faster),
  `autocast` enters it; `to_device` moves a batch (pinned, non-blocking to a GPU);
- measurement: `matmul_flops` (the peak that MFU is quoted against), `cpu_has_bf16`,
  `available_memory` (what a model may still allocate on a device or the host).
"""

from __future__ import annotations

import functools
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from protlm.errors import ProtlmError

DEVICE_SPECS = "auto, cpu, cuda or cuda:N"


def resolve_device(spec: str = "auto") -> torch.device:
    """`auto` -> CUDA when available, else the CPU; `cpu`, `cuda`, `cuda:N` as asked (ProtlmError when
    the machine has no such device)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = spec.partition(":")
    if kind not in ("cpu", "cuda") or (kind == "cpu" and index) or (index and not index.isdigit()):
        raise ProtlmError(f"device {spec!r}: expected {DEVICE_SPECS}")
    if kind == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (index and int(index) >= n):
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ProtlmError(
                f"device {spec!r}: this machine has {n} CUDA device(s) (torch {torch.__version__}, {build})"
            )
    return torch.device(spec)


def make_accelerator(spec: str = "auto"):
    """The `accelerate.Accelerator` of a training run (pretrain, finetune, the benchmarks): CPU-only when
    `spec` resolves to the CPU, else on CUDA, where each process takes its own GPU (Accelerate's
    LOCAL_RANK under torchrun). A GPU index is not a training choice: `auto`, `cpu` or `cuda`."""
    from accelerate import Accelerator

    device = resolve_device(spec)
    if device.index is not None:
        raise ProtlmError(f"device {spec!r}: training takes auto, cpu or cuda (torchrun gives each process its GPU)")
    return Accelerator(cpu=device.type == "cpu")


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device: torch.device) -> str:
    """One line: the GPU's name and count, or the CPU's name, cores and torch threads."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device.index or 0)} (x{torch.cuda.device_count()})"
    return f"cpu: {cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


PEAK_SIZE = {"cuda": 8192, "cpu": 1024}  # matrices large enough to be bound by arithmetic, not launches


def matmul_flops(
    dtype: torch.dtype, n: int | None = None, seconds: float = 0.2, device: str = "cpu", trials: int = 5
) -> float:
    """Measured FLOP/s of n x n matmuls in `dtype` on `device`: the best of `trials` timed runs of about
    `seconds / trials` each, after a warm-up, each run ended by a sync (so the GPU's work is timed, not
    the launch rate). `n` defaults to a size that keeps the device busy (8192 on CUDA)."""
    n = n or PEAK_SIZE["cuda" if device.startswith("cuda") else "cpu"]
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    start = time.perf_counter()
    torch.mm(a, b)  # warm-up: the kernel choice and the clocks
    sync()
    per = max(time.perf_counter() - start, 1e-6)
    reps = max(1, int(seconds / trials / per))
    trials = trials if per * trials <= 2 * seconds else 1  # a slow kernel (bf16 without bf16 units): once
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        sync()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


@functools.cache
def cpu_bf16_is_faster() -> bool:
    """Measure, don't assume: bf16 matmul must beat fp32 on this CPU (a torch build without
    AVX512-BF16 kernels runs bf16 matmuls ~100x slower than fp32)."""
    return matmul_flops(torch.bfloat16, 512, 0.1, trials=2) > matmul_flops(torch.float32, 512, 0.1, trials=2)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None (= fp32) or bf16. `auto` takes bf16 on CUDA devices that support it, and on CPUs that
    advertise AVX512-BF16/AMX *and* run bf16 matmuls faster than fp32 in a quick measurement."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_bf16() and cpu_bf16_is_faster() else None


def inference_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast of inference (embed, variant scores): as `autocast_dtype`, except that `auto` is fp32 on
    the CPU. An embedding or a score must not depend on the CPU's instruction set: bf16 moves ESM-2
    embeddings by up to 1.6e-2 against 1.2e-6 in fp32; `--precision bf16` asks for it."""
    if precision == "auto" and device.type != "cuda":
        return None
    return autocast_dtype(precision, device)


def precision_name(dtype: torch.dtype | None) -> str:
    """fp32 or bf16: what an output records of the autocast it was computed under."""
    return "bf16" if dtype == torch.bfloat16 else "fp32"


BF16_MARGIN = 1.1  # bf16 must be this much faster to be chosen: fp32 is exact, and a near tie may flip


def faster_dtype(run: Callable[[torch.dtype | None], None], sync: Callable[[], None] = lambda: None,
                 trials: int = 2) -> torch.dtype | None:  # fmt: skip
    """bf16 when `run(torch.bfloat16)` (the work itself, e.g. a training step's forward and backward under
    autocast) beats `run(None)` (fp32) by `BF16_MARGIN`, each warmed up once and timed at its best of
    `trials`; else None (fp32)."""
    best = {}
    for dtype in (None, torch.bfloat16):
        run(dtype)
        sync()
        times = []
        for _ in range(trials):
            start = time.perf_counter()
            run(dtype)
            sync()
            times.append(time.perf_counter() - start)
        best[dtype] = min(times)
    return torch.bfloat16 if best[torch.bfloat16] * BF16_MARGIN < best[None] else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """Autocast to `dtype` (from `autocast_dtype`) on `device`; fp32 (autocast off) when it is None."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def to_device(fields: dict[str, torch.Tensor | None], device: torch.device) -> dict[str, torch.Tensor | None]:
    """A batch's tensors on `device` (None stays None); to a GPU from pinned memory without blocking
    the host, so the next batch is built while this one is copied and trained on."""
    if device.type != "cuda":
        return {k: None if v is None else v.to(device) for k, v in fields.items()}
    return {k: None if v is None else v.pin_memory().to(device, non_blocking=True) for k, v in fields.items()}


def available_memory(device=None) -> int | None:
    """Bytes that can be allocated now: a CUDA device's free memory, else the host's `MemAvailable`
    (bounded by the cgroup v2 limit when one is set); None when unknown."""
    if device is not None and str(device).startswith("cuda"):
        if torch.cuda.is_available():
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit.isdigit():
            free = min(free, int(limit) - used) if free is not None else int(limit) - used
    except (OSError, ValueError):
        pass
    return free
