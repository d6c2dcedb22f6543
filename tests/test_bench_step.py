"""A benchmark times what users run: bench/pretrain_throughput.py steps with protlm's `train_step`, the one the
training loop calls, and has no backward pass of its own."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def called_names(tree: ast.AST) -> set[str]:
    return {getattr(c.func, "id", None) or getattr(c.func, "attr", None) for c in calls(tree)}


def function(tree: ast.Module, name: str) -> ast.FunctionDef:
    return next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)


def test_the_throughput_bench_calls_the_real_step():
    tree = ast.parse((ROOT / "bench" / "pretrain_throughput.py").read_text())
    imported = {
        (n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names if n.module
    }
    assert ("protlm.train.loop", "train_step") in imported
    for row in ("run_protlm", "run_seed_recipe"):
        assert "train_step" in called_names(function(tree, row)), row
    assert "backward" not in called_names(tree)  # no step of its own: no loss.backward() anywhere


def test_the_compile_bench_times_the_real_step():
    tree = ast.parse((ROOT / "bench" / "compile_lever.py").read_text())
    assert "train_step" in called_names(tree) and "backward" not in called_names(tree)


def test_the_loop_steps_only_through_train_step():
    tree = ast.parse((ROOT / "src" / "protlm" / "train" / "loop.py").read_text())
    assert "train_step" in called_names(function(tree, "_fit"))
    outside = [f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name != "train_step"]
    for name in outside:
        assert not {"backward", "clip_grad_norm_"} & called_names(function(tree, name)), name
