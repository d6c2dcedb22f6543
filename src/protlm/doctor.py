"""`protlm doctor`: the install check on one screen. Versions of protlm, Python and the libraries it runs on,
the device training would use, bf16 support *measured* (a matmul timed in bf16 and fp32, since CPUs with the
instructions can still run bf16 slower), and where the caches are."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

LIBRARIES = ("torch", "transformers", "tokenizers", "huggingface-hub", "accelerate", "peft", "safetensors", "numpy",
             "pandas", "pyarrow", "duckdb", "scikit-learn", "typer", "p-scldata", "tensorboard")  # fmt: skip


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _transformers_sees_torch() -> str:
    """transformers silently switches itself off below the torch it needs, which no resolver can see."""
    from transformers.utils import is_torch_available

    if is_torch_available():
        return "yes"
    return (
        f"NO: transformers {_version('transformers')} ignores torch {_version('torch')} (it needs a newer one): "
        "upgrade torch, or install an older transformers"
    )


def report(measure_seconds: float = 0.2) -> list[tuple[str, str]]:
    """(label, value) rows, in display order."""
    import torch

    from protlm import __version__
    from protlm.device import autocast_dtype, cpu_has_bf16, describe_device, matmul_flops, resolve_device
    from protlm.tokenized import default_cache_dir

    rows = [("protlm", __version__), ("python", f"{platform.python_version()} ({sys.executable})")]
    rows += [(name, _version(name)) for name in LIBRARIES]
    rows.append(("transformers uses torch", _transformers_sees_torch()))
    rows.append(("torch build", f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only"))
    device = resolve_device("auto")  # the device training would use
    cuda = device.type == "cuda"
    rows.append(("device", describe_device(device)))
    fp32 = matmul_flops(torch.float32, None, measure_seconds, device.type)  # as the benchmarks measure the peak
    bf16 = matmul_flops(torch.bfloat16, None, measure_seconds, device.type)
    flags = "" if cuda else f"; CPU flags {'have' if cpu_has_bf16() else 'lack'} AVX512-BF16/AMX"
    rows.append(("matmul (measured)", f"fp32 {fp32 / 1e9:,.0f} GFLOP/s, bf16 {bf16 / 1e9:,.0f} GFLOP/s{flags}"))
    auto = autocast_dtype("auto", device)
    rows.append(("--precision auto", "bf16" if auto else "fp32"))
    from huggingface_hub import constants

    rows.append(("protlm cache", str(default_cache_dir())))
    rows.append(("HF cache", str(constants.HF_HUB_CACHE)))
    rows.append(("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "unset")))
    return rows
