"""Checkpoints: model (safetensors via `save_pretrained`) + tokenizer + full training state.

Layout of one checkpoint directory:
    config.json, model.safetensors, tokenizer.json, ...   loadable by plain `from_pretrained`
    optimizer.safetensors       optimizer tensors (AdamW moments and step counts)
    trainer_state.json          step, data position, optimizer param groups, RNG states, elapsed time
Nothing is pickled. A checkpoint is written into a temporary sibling directory and renamed into
place, so a kill at any moment leaves the previous good checkpoint intact; leftovers of a killed
write (`.tmp-*`) are removed on the next save.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from protlm.errors import ProtlmError
from protlm.io.atomic import new_temp_dir
from protlm.io.structured import read_json
from protlm.progress import no_hf_bars
from protlm.train.faults import fault

STEP_DIR = re.compile(r"^step-(\d{8})$")
STATE_FILE = "trainer_state.json"
OPTIM_FILE = "optimizer.safetensors"


def rng_state() -> tuple[dict, dict[str, torch.Tensor]]:
    """(JSON-able python/numpy states, tensors of torch states)."""
    np_state = np.random.get_state()
    meta = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return meta, tensors


def set_rng_state(meta: dict, tensors: dict[str, torch.Tensor]) -> None:
    v, state, gauss = meta["python"]
    random.setstate((v, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    sd = optimizer.state_dict()
    tensors = {
        f"state.{idx}.{name}": (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
        for idx, st in sd["state"].items()
        for name, v in st.items()
    }
    return tensors, sd["param_groups"]


def _load_optimizer(optimizer: torch.optim.Optimizer, path: Path, param_groups: list[dict]) -> None:
    flat = load_file(path)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})


def save_checkpoint(
    run_dir: Path,
    step: int,
    model,
    tokenizer,
    optimizer: torch.optim.Optimizer,
    state: dict,
    state_dict: dict | None = None,
    keep: int = 2,
) -> Path:
    """Atomically write `run_dir/checkpoints/step-XXXXXXXX` and keep the newest `keep`."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = new_temp_dir(final)
    save_pretrained_atomic_parts(tmp, model, tokenizer, state_dict)
    tensors, groups = _optimizer_tensors(optimizer)
    meta, rng_tensors = rng_state()
    save_file(tensors, tmp / OPTIM_FILE)
    save_file(rng_tensors, tmp / "rng.safetensors")
    (tmp / STATE_FILE).write_text(json.dumps({**state, "param_groups": groups, "rng": meta}) + "\n")
    _fsync_dir(tmp)
    fault("save", step)
    if final.exists():  # re-saving the same step (e.g. the final save): replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    for old in checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return final


def save_pretrained_atomic_parts(path: Path, model, tokenizer, state_dict: dict | None = None) -> None:
    """`save_pretrained` (safetensors) of model and tokenizer into `path`."""
    path.mkdir(parents=True, exist_ok=True)
    with no_hf_bars():  # the loop logs the save; a bar per checkpoint only floods logs
        model.save_pretrained(path, state_dict=state_dict, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


def save_model_atomic(path: Path, model, tokenizer, state_dict: dict | None = None, extra: dict | None = None) -> Path:
    """Write a final model directory atomically (temp sibling + rename)."""
    tmp = new_temp_dir(path)
    save_pretrained_atomic_parts(tmp, model, tokenizer, state_dict)
    for name, content in (extra or {}).items():  # text, or bytes (e.g. an adapter's safetensors)
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    if path.exists():
        shutil.rmtree(path)
    os.rename(tmp, path)
    return path


def _fsync_dir(path: Path) -> None:
    for f in path.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporaries never match the name pattern)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if STEP_DIR.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def load_training_state(ckpt: Path, optimizer: torch.optim.Optimizer) -> dict:
    """Restore optimizer and RNG states from `ckpt`; returns the saved loop state. A checkpoint is part of
    a run directory, which may come from someone else: anything that does not fit this run's optimizer,
    or is not the RNG state protlm saves, is one ProtlmError naming the checkpoint."""
    from safetensors import SafetensorError

    state = read_json(ckpt / STATE_FILE)
    try:
        if not isinstance(state, dict):
            raise TypeError(f"{STATE_FILE} holds a {type(state).__name__}, not an object")
        groups = state.pop("param_groups")
        _check_param_groups(groups, optimizer)
        _load_optimizer(optimizer, ckpt / OPTIM_FILE, groups)
        set_rng_state(state.pop("rng"), load_file(ckpt / "rng.safetensors"))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError, SafetensorError) as e:
        why = (str(e).splitlines() or [""])[0][:160]
        raise ProtlmError(f"{ckpt}: not a checkpoint this run can resume ({type(e).__name__}: {why})") from None
    return state


def _check_param_groups(groups, optimizer: torch.optim.Optimizer) -> None:
    """The saved optimizer groups match the live ones: same count, same parameters, each setting of the
    same kind (a number where a number goes), so that nothing fails later, mid-training."""
    live = optimizer.param_groups
    if not isinstance(groups, list) or len(groups) != len(live):
        raise ValueError("param_groups do not match this run's optimizer")
    for saved, group in zip(groups, live, strict=True):
        if not isinstance(saved, dict) or set(saved) != set(group):
            raise ValueError("param_groups do not match this run's optimizer")
        params = saved["params"]
        if (
            not isinstance(params, list)
            or len(params) != len(group["params"])
            or any(type(i) is not int for i in params)
        ):
            raise ValueError("param_groups name other parameters than this run's")
        for key, value in group.items():
            if key != "params" and _kind(saved[key]) != _kind(value):
                raise ValueError(f"param_groups: {key} is not a {_kind(value)}")


def _kind(value) -> str:
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, int | float) or (torch.is_tensor(value) and value.numel() == 1):
        return "number"
    if isinstance(value, list | tuple):
        return "pair" if len(value) == 2 and all(_kind(v) == "number" for v in value) else "list"
    return type(value).__name__
