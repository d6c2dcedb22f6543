"""`protlm evaluate`: score a fine-tuned model (or the composition baseline) on task splits."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protlm.device import resolve_device
from protlm.errors import ProtlmError
from protlm.io.atomic import output_dir, refuse_links, write_json
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


SCL2205 = "scl2205"
SCL_SPLITS = {"train": "train", "eval": "dev", "heldout": "test"}  # SCL2205's split names -> the task's
WHOLE = "all"  # the split `evaluate --data FILE` scores: every record of the file


@dataclass
class Evaluation:
    """What `protlm evaluate` scores: the data, its splits to score, and a name for the default output."""

    data: TaskData
    splits: list[str]
    name: str

    def records(self) -> dict:
        """Records read, skipped (by reason), scored, and left unused (in splits not asked for)."""
        why: Counter = Counter()
        for r in self.data.reports:
            why.update(r.skipped)
        scored = sum(len(self.data.split(s)) for s in self.splits)
        total = sum(len(v) for v in self.data.splits.values())
        unused = {k: len(v) for k, v in self.data.splits.items() if k not in self.splits and v}
        return {"read": sum(r.n_read for r in self.data.reports), "skipped": sum(why.values()),
                "skipped_why": dict(why), "scored": scored, "unused": total - scored, "unused_splits": unused}  # fmt: skip

    def summary(self) -> str:
        r = self.records()
        why = "; ".join(f"{n:,} {reason}" for reason, n in r["skipped_why"].items())
        line = f"{self.data.source}: {r['read']:,} records read, {r['scored']:,} scored ({', '.join(self.splits)}), "
        line += f"{r['skipped']:,} skipped" + (f" ({why})" if why else "")
        unused = ", ".join(f"{k} {n:,}" for k, n in r["unused_splits"].items())
        return line + f", {r['unused']:,} unused" + (f" (splits not asked for: {unused})" if unused else "")


def evaluation(model_dir: Path, data: str | None, splits: list[str] | None, background: str | None = None,
               sequences: str | None = None) -> Evaluation:  # fmt: skip
    """The data and splits `protlm evaluate` scores.
    - no --data: the data the model was trained on; dev and every test split unless --split names others;
    - `--data scl2205[:train|eval|heldout]`: SCL2205's official split (default heldout), localization models;
    - `--data FILE` (or a directory): every record of it, as one split `all`, unless --split names splits
      (then made as fine-tuning makes them)."""
    info = task_info(model_dir)
    spec, d = get_task(info["task"]), info["data"]
    source, _, part = (data or "").partition(":")
    if data is None:
        td = load_task_data(spec, d["data"], d["split_seed"], d["strict"], d["background"], d.get("sequences"))
        names = splits or ["dev", *td.test_splits]
        return Evaluation(td, names, f"{Path(td.source).name}-{'+'.join(names)}")
    if source == SCL2205:
        if spec.name != "localization":
            raise ProtlmError(f"--data {data}: SCL2205 is the built-in data of localization, not of {spec.name}")
        if part not in ("", *SCL_SPLITS):
            raise ProtlmError(f"--data {data}: SCL2205's splits are {', '.join(SCL_SPLITS)}")
        if part and splits:
            raise ProtlmError(f"--data {data} names a split already: drop --split")
        names = [SCL_SPLITS[part or "heldout"]] if not splits else splits
        td = load_task_data(spec, None, d["split_seed"], d["strict"])
        return Evaluation(td, names, f"{SCL2205}-{'+'.join(names)}")
    td = load_task_data(spec, data, d["split_seed"], d["strict"], background, sequences)
    if not splits:
        every = [ex for examples in td.splits.values() for ex in examples]
        td, splits = dataclasses.replace(td, splits={WHOLE: every}), [WHOLE]
    return Evaluation(td, splits, f"{Path(data).name}-{'+'.join(splits)}")


def task_info(model_dir: Path) -> dict:
    """The task file of a fine-tuned model directory (no weights loaded)."""
    info_file = Path(model_dir) / TASK_FILE
    if not info_file.is_file():
        raise ProtlmError(
            f"{model_dir}: not a fine-tuned protlm model (no {TASK_FILE}); use the run's model/ directory"
        )
    return read_task_file(info_file)


def new_output(model_dir: Path, name: str) -> Path:
    """A directory beside the model's run that does not exist yet: `evaluate-NAME`, `evaluate-NAME-2` ..."""
    base = Path(model_dir).parent / f"evaluate-{name}"
    k = 1
    while (candidate := base if k == 1 else base.with_name(f"{base.name}-{k}")).exists():
        k += 1
    return candidate


def refuse_overwrite(out: Path, model_dir: Path) -> None:
    """An evaluation never replaces a fine-tune's records (MODEL/../eval) or an earlier evaluation's, and never
    writes through a link (checked before any work)."""
    refuse_links(out, "--out")
    if (out / "results.json").exists() or out.resolve() == (Path(model_dir).parent / "eval").resolve():
        raise ProtlmError(f"--out {out}: holds the results of the fine-tune or of an earlier evaluation; choose "
                          "a new --out (by default evaluate writes a new directory beside the model)")  # fmt: skip


def write_outputs(path: Path, y: np.ndarray, prob: np.ndarray, ids: list[str]) -> Path:
    """A split's labels, model outputs and row ids as scored (`y`, `prob`: one row per example, or per scored
    residue, `ID:position`), so that any metric, or a paired comparison of two models
    (`metrics.paired_bootstrap`), can be recomputed without the model. Plain arrays, no pickle."""
    from protlm.io.atomic import atomic_open

    with atomic_open(path, "wb") as fh:
        np.savez(fh, y=np.asarray(y), prob=np.asarray(prob, dtype=np.float32), ids=np.asarray(ids, dtype=np.str_))
    return path


def read_outputs(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, prob, ids) of `write_outputs`."""
    with np.load(path, allow_pickle=False) as z:
        return z["y"], z["prob"], z["ids"]


def evaluate_model(
    model_dir: Path,
    splits: list[str] | None,
    out: Path,
    data: TaskData | None = None,
    tokens_per_batch: int = 8192,
    log: Callable[[str], None] = print,
    device: str = "cpu",
    extra: dict | None = None,
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
    results: dict = {"task": spec.name, "model": str(model_dir), "model_source": info.get("model_source"),
                     **(extra or {}), "splits": {}}  # fmt: skip
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
        constant = spec.kind.constant(prob, data.labels)
        results["splits"][split] = {
            "n_examples": len(examples),
            "n_scored": int(len(y)),
            "metrics": scores,
            "constant": constant,  # '' or e.g. 'predicts one class (Cytoplasm)'
            "class_counts": data.class_counts(split),
            "seconds": time.perf_counter() - t0,
        }
        spec.kind.report(y, prob, data.labels, ids, out, split, f"{spec.name} {split} ({len(examples):,})")
        write_outputs(out / f"outputs_{split}.npz", y, prob, ids)
        log(f"{spec.name} {split}: " + ", ".join(f"{k} {M.metric_text(k, v)}" for k, v in scores.items())
            + f" (n={len(y):,})" + (f" - {constant}" if constant else ""))  # fmt: skip
    write_json(out / "results.json", results)
    return results
