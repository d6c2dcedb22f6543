"""`protlm evaluate`: score a fine-tuned model (or the composition baseline) on task splits."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from protlm.device import resolve_device
from protlm.errors import ProtlmError
from protlm.io.atomic import output_dir, write_json
from protlm.models.loading import TASK_FILE, open_model, read_task_file, window_tokens
from protlm.tasks import metrics as M
from protlm.tasks.baseline import Baseline
from protlm.tasks.batches import build_taskset
from protlm.tasks.data import TaskData
from protlm.tasks.predict import predict
from protlm.tasks.table import get_task, load_task_data


def load_finetuned(path: Path, info_from: Path | None = None, need_info: bool = True):
    """(kind, model, tokenizer, task info) of a `protlm finetune` model directory (or checkpoint)."""
    info_file = (info_from or path) / TASK_FILE
    if need_info and not info_file.is_file():
        raise ProtlmError(f"{path}: not a fine-tuned protlm model (no {TASK_FILE}); use the run's model/ directory")
    info = read_task_file(info_file) if info_file.is_file() else {}
    if "baseline" in info:
        return "baseline", Baseline.load(path), None, info
    md = open_model(path)
    return "model", md.task_model(), md.tokenizer(), info


def evaluate_model(
    model_dir: Path,
    splits: list[str] | None,
    out: Path,
    data: TaskData | None = None,
    tokens_per_batch: int = 8192,
    log: Callable[[str], None] = print,
    device: str = "cpu",
) -> dict:
    """Score a fine-tuned model on splits; write results.json and the task kind's files (predictions, confusion /
    ROC / PR PNGs, or a scatter plot for a regression)."""
    target = resolve_device(device)  # first: a device the machine lacks is named before anything loads
    kind, model, tokenizer, info = load_finetuned(model_dir)
    if kind == "model":
        model.to(target)
    spec = get_task(info["task"])
    if data is None:
        d = info["data"]
        data = load_task_data(spec, d["data"], d["split_seed"], d["strict"], d["background"], d.get("sequences"))
    splits = splits or ["dev", *data.test_splits]
    data.require(splits)
    if list(data.labels) != info["labels"]:
        raise ProtlmError(
            f"{model_dir}: the model's label space ({len(info['labels'])} labels) differs from the data's ({len(data.labels)})"
        )
    output_dir(out)
    results: dict = {"task": spec.name, "model": str(model_dir), "model_source": info.get("model_source"), "splits": {}}
    for split in splits:
        examples = data.split(split)
        t0 = time.perf_counter()
        if kind == "baseline":
            y, prob = model.predict_proba(examples)
            ids = [""] * len(y) if spec.kind.per_residue else [ex.id for ex in examples]
        else:
            trained = (info.get("config") or {}).get("max_tokens")  # the windows the model was trained on
            ts = build_taskset(spec.kind, examples, tokenizer, window_tokens(model.config, trained))
            y, prob, ids = predict(model, ts, tokens_per_batch, 64)
        scores = M.compute(spec.metrics, y, prob)
        results["splits"][split] = {
            "n_examples": len(examples),
            "n_scored": int(len(y)),
            "metrics": scores,
            "class_counts": data.class_counts(split),
            "seconds": time.perf_counter() - t0,
        }
        spec.kind.report(y, prob, data.labels, ids, out, split, f"{spec.name} {split} ({len(examples):,})")
        log(f"{spec.name} {split}: " + ", ".join(f"{k} {M.metric_text(k, v)}" for k, v in scores.items())
            + f" (n={len(y):,})")  # fmt: skip
    write_json(out / "results.json", results)
    return results
