"""protlm/device.py: device choice, precision and the one place an Accelerator is built."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from protlm.device import autocast, autocast_dtype, resolve_device
from protlm.errors import ProtlmError

SRC = Path(__file__).resolve().parents[1] / "src" / "protlm"


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cpu:0", "cuda:x", ""):
        with pytest.raises(ProtlmError, match="expected auto, cpu, cuda or cuda:N"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ProtlmError, match="0 CUDA device"):
            resolve_device("cuda:0")


def test_precision_choices():
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None and autocast_dtype("bf16", cpu) is torch.bfloat16
    with autocast(cpu, None):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with autocast(cpu, torch.bfloat16):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_one_accelerator():
    """`Accelerator(...)` is built in device.py only (pretrain and finetune call `make_accelerator`)."""
    builders = []
    for path in SRC.rglob("*.py"):
        if path.name == "device.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name == "Accelerator":
                    builders.append(str(path))
    assert builders == []


def test_the_peak_is_measured_on_large_matrices_after_a_warm_up_best_of_several(monkeypatch):
    import torch

    from protlm import device as D

    sizes, calls = [], []
    real_mm = torch.mm

    def mm(a, b):
        sizes.append(a.shape[0])
        calls.append(1)
        return real_mm(a, b)

    monkeypatch.setattr(torch, "mm", mm)
    flops = D.matmul_flops(torch.float32, seconds=0.5)
    assert set(sizes) == {D.PEAK_SIZE["cpu"]} and D.PEAK_SIZE["cuda"] == 8192
    assert len(calls) >= 1 + 5 and (len(calls) - 1) % 5 == 0  # one warm-up, then 5 equal timed runs
    assert flops > 0
