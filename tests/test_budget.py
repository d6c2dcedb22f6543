"""Batches sized to the device: the choice against a fake memory probe, the CPU default, tokens per step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from protlm.errors import ProtlmError
from protlm.train.budget import CPU_TOKENS_PER_BATCH, MAX_AUTO, choose_tokens_per_batch, resolve_budget
from protlm.train.config import PretrainConfig, parse_budget

GIB = 2**30


def linear_memory(fixed: int, per_token: int, oom_at: int | None = None):
    """A fake device: peak = fixed + per_token x budget; out of memory past `oom_at` tokens."""
    asked = []

    def peak(budget: int):
        asked.append(budget)
        return None if oom_at is not None and budget > oom_at else fixed + per_token * budget

    return peak, asked


def test_the_largest_doubling_that_leaves_headroom():
    peak, asked = linear_memory(fixed=10 * GIB, per_token=1 << 20)  # 1 MiB a token
    chosen = choose_tokens_per_batch(peak, capacity=80 * GIB, max_tokens=1024)
    assert chosen == 32768  # 42 GiB used; 65,536 would need 74 GiB > 85% of 80
    assert asked == [1024, 2048, 4096, 8192, 16384, 32768, 65536]  # doubling, one probe past the answer


def test_out_of_memory_stops_the_search_and_the_cap_holds():
    peak, _ = linear_memory(fixed=0, per_token=1, oom_at=8192)
    assert choose_tokens_per_batch(peak, capacity=10**12, max_tokens=512) == 8192
    peak, asked = linear_memory(fixed=0, per_token=1)
    assert choose_tokens_per_batch(peak, capacity=10**12, max_tokens=512) == MAX_AUTO
    assert max(asked) == MAX_AUTO


def test_at_least_one_row_even_when_nothing_fits():
    peak, _ = linear_memory(fixed=100 * GIB, per_token=1)
    assert choose_tokens_per_batch(peak, capacity=80 * GIB, max_tokens=2048) == 2048


def _acc(device="cpu"):
    return SimpleNamespace(device=torch.device(device), num_processes=1)


def test_auto_on_the_cpu_and_on_resume_and_tokens_per_step():
    cfg = PretrainConfig(tokenizer="t", max_steps=1)
    assert cfg.tokens_per_batch == "auto"
    resolve_budget(cfg, _acc(), probe=lambda: pytest.fail("the CPU is not probed"), saved=None, log=print)
    assert cfg.tokens_per_batch == CPU_TOKENS_PER_BATCH and cfg.grad_accum == 1

    cfg = PretrainConfig(tokenizer="t", max_steps=1, tokens_per_step=20000)
    resolve_budget(cfg, _acc(), probe=None, saved=4096, log=print)  # a resumed run keeps its budget
    assert (cfg.tokens_per_batch, cfg.grad_accum) == (4096, 5)

    cfg = PretrainConfig(tokenizer="t", max_steps=1, tokens_per_batch=1000)
    resolve_budget(cfg, _acc(), probe=None, saved=4096, log=print)  # a number given stays
    assert cfg.tokens_per_batch == 1000


def test_a_budget_is_auto_or_a_positive_number():
    with pytest.raises(ProtlmError, match="tokens_per_batch must be auto or > 0"):
        PretrainConfig(tokenizer="t", max_steps=1, tokens_per_batch=0).validate()
    assert parse_budget("auto") == "auto" and parse_budget("512") == 512
    with pytest.raises(ProtlmError, match="--tokens-per-batch 'lots'"):
        parse_budget("lots")
