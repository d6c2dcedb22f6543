"""`--precision auto` on a CPU is decided by the model's own step, measured once per run and kept in its
checkpoints: a bf16 matmul may beat fp32 while the whole step of a small model loses (casts, elementwise
work), as it did on this project's AMX machine (bench/RESULTS.md, issue 28)."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import torch

from conftest import run_cli
from protlm.device import BF16_MARGIN, faster_dtype
from test_pretrain import base_args


@pytest.mark.parametrize(("bf16_s", "expected"), [(0.002, torch.bfloat16), (0.0095, None), (0.03, None)])
def test_bf16_is_chosen_only_when_its_step_is_clearly_faster(bf16_s, expected):
    calls = []

    def run(dtype):
        calls.append(dtype)
        time.sleep(bf16_s if dtype is torch.bfloat16 else 0.01)

    assert faster_dtype(run, trials=2) is expected
    assert calls.count(None) == calls.count(torch.bfloat16) == 3  # a warm-up and two timed runs each
    assert BF16_MARGIN > 1


def test_the_chosen_precision_is_kept_in_checkpoints_and_checked_on_resume(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(["pretrain", *base_args(run, tmp_path / "cache", **{"--max-steps": 4, "--precision": "auto"})],
                           capsys)  # fmt: skip
    assert code in (0, None), err
    (ckpt,) = (run / "checkpoints").glob("step-*")
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["precision"] in ("fp32", "bf16")
    for value, ok in ((state["precision"], True), ("fp64", False)):
        resumed = tmp_path / f"resumed-{value}"
        shutil.copytree(run, resumed)
        (ckpt_copy,) = (resumed / "checkpoints").glob("step-*")
        (ckpt_copy / "trainer_state.json").write_text(json.dumps({**state, "precision": value}))
        args = base_args(resumed, tmp_path / "cache", **{"--max-steps": 6, "--precision": "auto"})
        code, _, err = run_cli(["pretrain", *args, "--resume"], capsys)
        if ok:
            assert code in (0, None), err
        else:
            last = err.strip().splitlines()[-1]  # after the run's own log lines: the error, one line
            assert code == 2 and last.startswith("protlm: error:") and "precision is not fp32 or bf16" in last


def test_a_second_run_on_this_machine_reuses_the_measured_choice(tmp_path, capsys, monkeypatch):
    """Two runs of the same command on one machine compute in the same precision, whatever the load was when
    the first measured it: the choice is cached per machine and step shape (train/budget.PrecisionCache)."""
    import protlm.device as device
    import protlm.train.loop as loop

    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(device, "cpu_bf16_is_faster", lambda: True)
    measured = []
    monkeypatch.setattr(loop, "faster_step_dtype", lambda *a: measured.append(1) or torch.bfloat16)
    logs = []
    for name in ("a", "b"):
        code, _, err = run_cli(["pretrain", *base_args(tmp_path / name, tmp_path / "cache",
                                                       **{"--max-steps": 2, "--precision": "auto"})], capsys)  # fmt: skip
        assert code in (0, None), err
        logs.append(err)
    assert measured == [1] and "measured now" in logs[0] and "measured before on this machine" in logs[1]
    for name in ("a", "b"):
        (ckpt,) = (tmp_path / name / "checkpoints").glob("step-*")
        assert json.loads((ckpt / "trainer_state.json").read_text())["precision"] == "bf16"
    (tmp_path / "cache" / "precision.json").write_text("[not an object")  # damaged: measured again
    code, _, err = run_cli(["pretrain", *base_args(tmp_path / "c", tmp_path / "cache",
                                                   **{"--max-steps": 2, "--precision": "auto"})], capsys)  # fmt: skip
    assert code in (0, None) and measured == [1, 1] and "measured now" in err
