"""Task kinds as types: what a task predicts, and everything that follows from it.

A kind owns its labels (how an example's label becomes a tensor in a batch, and what `y` the metrics
see), its head's output width and loss, how raw outputs become predictions, the metrics it can
report, its evaluation plots and prediction rows, and its composition baseline's estimator. The task
table (`tasks/table.py`) gives each task one kind; nothing else in protlm branches on a kind's name.

| kind | label of an example | head output | loss | prediction |
|---|---|---|---|---|
| `sequence` | class index | C logits | cross-entropy | class probabilities |
| `pair` | class index of 2+ proteins | C logits | cross-entropy | class probabilities |
| `residue` | class index per residue (-1: unscored) | C logits per residue | cross-entropy | per-residue probabilities |
| `multilabel` | 0/1 per label | C logits | binary cross-entropy | per-label probabilities |
| `regression` | a number | 1 value (trained standardised) | mean squared error | the number |
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from protlm.errors import ProtlmError


@dataclass(frozen=True)
class Kind:
    """A class-probability kind: one class per example (`sequence`)."""

    name: str = "sequence"
    per_residue: bool = False  # one label per residue (the residue head; windows keep their residues)
    multi_part: bool = False  # examples of 2+ proteins
    head: str = "sequence"  # the head's shape (tasks/model.py): pooled ("sequence") or per residue
    metrics: tuple[str, ...] = ("accuracy", "macro_f1", "f1", "mcc", "roc_auc", "pr_auc")

    # ----------------------------------------------------------------- labels
    def n_outputs(self, labels: tuple[str, ...]) -> int:
        return len(labels)

    def label_tensor(self, labels: list) -> torch.Tensor:
        """The labels of a batch's examples (not per-residue kinds)."""
        return torch.tensor([int(y) for y in labels], dtype=torch.long)

    def targets(self, labels: list) -> np.ndarray:
        """`y` for the metrics: one row per example."""
        return np.array([int(y) for y in labels], dtype=np.int64)

    def counts(self, labels: list, names: tuple[str, ...]) -> dict[str, int]:
        """Examples per class: the class-imbalance report."""
        counts = np.bincount(np.asarray([int(y) for y in labels], dtype=np.int64), minlength=len(names))
        return {name: int(counts[k]) for k, name in enumerate(names)}

    def class_weights(self, labels: list, names: tuple[str, ...]) -> torch.Tensor | None:
        """`--weighted-loss`: inverse-frequency weights n / (C * n_c) of the training labels (0 for absent classes)."""
        counts = np.array(list(self.counts(labels, names).values()), dtype=np.float64)
        w = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
        return torch.tensor(w, dtype=torch.float32)

    # ----------------------------------------------------------------- head
    def loss(self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None, config) -> torch.Tensor:
        weight = weights.to(torch.float32) if weights is not None else None
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                           weight=weight, ignore_index=-100)  # fmt: skip

    def outputs(self, logits: np.ndarray) -> np.ndarray:
        """Raw head outputs (averaged over windows) -> what is reported: class probabilities here."""
        z = logits - logits.max(-1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(-1, keepdims=True)

    def predicted(self, out: np.ndarray, names: tuple[str, ...]):
        """The predicted label(s) of one example's outputs."""
        return names[int(out.argmax())]

    # ----------------------------------------------------------------- reports
    ONE_CLASS = 0.99  # share of a split's predictions in one class that flags a (near-)constant predictor

    def constant(self, out: np.ndarray, names: tuple[str, ...]) -> str:
        """'predicts one class (NAME)' when (nearly: `ONE_CLASS`) every row of a split gets the same prediction,
        else '': the metrics of such a model measure the split's class balance, not what it learned."""
        if len(out) < 2:
            return ""
        counts = np.bincount(np.asarray(out).argmax(-1), minlength=len(names))
        top = int(counts.argmax())
        share = counts[top] / counts.sum()
        if share < self.ONE_CLASS:
            return ""
        return f"predicts one class ({names[top]})" + ("" if share == 1 else f" for {share:.1%} of inputs")

    def header(self, names: tuple[str, ...]) -> str:
        return "id\tpredicted\t" + "\t".join(f"p_{x}" for x in names) + "\n"

    def row(self, rid: str, label, out: np.ndarray) -> str:
        return f"{rid}\t{label}\t" + "\t".join(f"{v:.4f}" for v in out) + "\n"

    def report(self, y: np.ndarray, out: np.ndarray, names: tuple[str, ...], ids: list[str], where: Path,
               split: str, title: str) -> None:  # fmt: skip
        """Evaluation files of a split: confusion matrix, ROC / PR curves (binary), predictions."""
        from protlm.tasks.report import plot_confusion, plot_curves, write_predictions

        plot_confusion(y, out, names, where / f"confusion_{split}.png", title)
        if len(names) == 2:
            plot_curves(y, out, where, split, title)
        write_predictions(where / f"predictions_{split}.tsv", ids, y, out, names)

    # ----------------------------------------------------------------- baseline
    def fit_linear(self, x: np.ndarray, y: np.ndarray, n_out: int, seed: int, class_weight: str | None):
        """(coef (n_out, d), intercept (n_out,)) of the composition baseline: multinomial logistic regression."""
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(max_iter=500, C=1.0, class_weight=class_weight, random_state=seed)
        clf.fit(x, y)
        coef = np.zeros((n_out, x.shape[1]))
        intercept = np.full(n_out, -1e9)  # classes absent from training are never predicted
        if len(clf.classes_) == 2 and n_out >= 2:  # sklearn keeps one row for binary problems
            coef[clf.classes_[1]], intercept[clf.classes_[1]] = clf.coef_[0], clf.intercept_[0]
            intercept[clf.classes_[0]] = 0.0
        else:
            coef[clf.classes_], intercept[clf.classes_] = clf.coef_, clf.intercept_
        return coef, intercept

    # ----------------------------------------------------------------- predictions
    def placeholder(self, seq: str, n_labels: int):
        """The label of an unlabelled input (prediction)."""
        return 0

    def collect(self, examples: list, logits: list[np.ndarray], n_out: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(y, outputs, ids) of a split: one row per example, from the head outputs averaged over windows."""
        z = np.stack(logits) if logits else np.zeros((0, n_out))
        return self.targets([ex.label for ex in examples]), self.outputs(z), [ex.id for ex in examples]

    def configure(self, config, train_labels: list) -> None:
        """Settings the head keeps in the model config, from the training labels (none here)."""

    def scale_output(self, logits: torch.Tensor, config) -> torch.Tensor:
        return logits


@dataclass(frozen=True)
class Pair(Kind):
    """One class per input of two or more proteins (`<s> A </s></s> B </s>`)."""

    name: str = "pair"
    multi_part: bool = True


def states(labels: list[str]) -> str:
    """Per-residue labels as one string ('CCHHHHEE' for ss3); space-separated when a label is longer."""
    return "".join(labels) if all(len(x) == 1 for x in labels) else " ".join(labels)


@dataclass(frozen=True)
class Residue(Kind):
    """One class per residue (-1 where the source leaves it unscored); metrics over all scored residues."""

    name: str = "residue"
    per_residue: bool = True
    head: str = "residue"
    metrics: tuple[str, ...] = ("q3", "q8", "accuracy", "macro_f1")

    def counts(self, labels: list, names: tuple[str, ...]) -> dict[str, int]:
        flat = np.concatenate([np.asarray(y)[np.asarray(y) >= 0] for y in labels]) if labels else np.zeros(0)
        counts = np.bincount(flat.astype(np.int64), minlength=len(names))
        return {name: int(counts[k]) for k, name in enumerate(names)}

    def collect(self, examples: list, logits: list[np.ndarray], n_out: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """One row per scored residue (`ID:position`, 1-based)."""
        ys, zs, ids = [np.zeros(0, np.int64)], [np.zeros((0, n_out))], []
        for ex, z in zip(examples, logits, strict=True):
            keep = np.asarray(ex.label) >= 0
            ys.append(np.asarray(ex.label)[keep].astype(np.int64))
            zs.append(z[keep])
            ids.extend(f"{ex.id}:{r + 1}" for r in np.flatnonzero(keep))
        return np.concatenate(ys), self.outputs(np.concatenate(zs)), ids

    def placeholder(self, seq: str, n_labels: int):
        return np.zeros(len(seq), np.int8)

    def predicted(self, out: np.ndarray, names: tuple[str, ...]):
        return [names[k] for k in out.argmax(-1)]

    def header(self, names: tuple[str, ...]) -> str:
        return "id\tlength\tpredicted\tmean_probability\n"

    def row(self, rid: str, label, out: np.ndarray) -> str:
        return f"{rid}\t{len(out)}\t{states(label)}\t{out.max(-1).mean():.4f}\n"

    def report(self, y, out, names, ids, where, split, title) -> None:
        from protlm.tasks.report import plot_confusion

        plot_confusion(y, out, names, where / f"confusion_{split}.png", title)


@dataclass(frozen=True)
class Regression(Kind):
    """One number per protein (stability, fluorescence...). The head predicts it standardised by the training
    split's mean and standard deviation (kept in the model config), so the loss is scale-free; outputs are in
    the data's units."""

    name: str = "regression"
    metrics: tuple[str, ...] = ("spearman", "pearson", "rmse", "mae")

    def n_outputs(self, labels: tuple[str, ...]) -> int:
        return 1

    def label_tensor(self, labels: list) -> torch.Tensor:
        return torch.tensor([float(y) for y in labels], dtype=torch.float32)

    def targets(self, labels: list) -> np.ndarray:
        return np.array([float(y) for y in labels], dtype=np.float64)

    def counts(self, labels: list, names: tuple[str, ...]) -> dict[str, float]:
        y = self.targets(labels)
        if not len(y):
            return {"n": 0}
        return {
            "n": len(y),
            "mean": float(y.mean()),
            "std": float(y.std()),
            "min": float(y.min()),
            "max": float(y.max()),
        }

    def class_weights(self, labels: list, names: tuple[str, ...]) -> torch.Tensor | None:
        raise ProtlmError("--weighted-loss weighs classes; a regression task has none")

    def configure(self, config, train_labels: list) -> None:
        y = self.targets(train_labels)
        config.protlm_target_mean = float(y.mean()) if len(y) else 0.0
        config.protlm_target_scale = float(y.std()) if len(y) > 1 and y.std() > 0 else 1.0

    def scale_output(self, logits: torch.Tensor, config) -> torch.Tensor:
        mean, scale = getattr(config, "protlm_target_mean", 0.0), getattr(config, "protlm_target_scale", 1.0)
        return logits * scale + mean

    def loss(self, logits, labels, weights, config) -> torch.Tensor:
        scale = getattr(config, "protlm_target_scale", 1.0)
        return nn.functional.mse_loss(logits[..., 0].float(), labels.float()) / scale**2

    def outputs(self, logits: np.ndarray) -> np.ndarray:
        return logits[..., 0]

    def placeholder(self, seq: str, n_labels: int):
        return 0.0

    def predicted(self, out, names):
        return float(out)

    def constant(self, out, names) -> str:
        out = np.asarray(out, dtype=np.float64)
        return "predicts one value" if len(out) > 1 and np.ptp(out) <= 1e-9 * max(1.0, np.abs(out).max()) else ""

    def header(self, names: tuple[str, ...]) -> str:
        return f"id\tpredicted_{names[0]}\n"

    def row(self, rid: str, label, out) -> str:
        return f"{rid}\t{label:.6g}\n"

    def report(self, y, out, names, ids, where, split, title) -> None:
        from protlm.tasks.report import plot_scatter, write_values

        plot_scatter(y, out, where / f"scatter_{split}.png", title, names[0])
        write_values(where / f"predictions_{split}.tsv", ids, y, out)

    def fit_linear(self, x, y, n_out, seed, class_weight):
        from sklearn.linear_model import Ridge

        if class_weight is not None:
            self.class_weights([], ())
        reg = Ridge(alpha=1.0).fit(x, y)
        return reg.coef_[None, :], np.array([reg.intercept_])


@dataclass(frozen=True)
class MultiLabel(Kind):
    """Any subset of the labels per protein (e.g. the compartments a protein is found in): one sigmoid per label."""

    name: str = "multilabel"
    metrics: tuple[str, ...] = ("micro_f1", "label_macro_f1", "exact_match", "label_roc_auc")

    def label_tensor(self, labels: list) -> torch.Tensor:
        return torch.as_tensor(np.stack(labels).astype(np.float32))

    def targets(self, labels: list) -> np.ndarray:
        return np.stack(labels).astype(np.int64) if labels else np.zeros((0, 0), np.int64)

    def counts(self, labels: list, names: tuple[str, ...]) -> dict[str, int]:
        total = self.targets(labels).sum(0) if labels else np.zeros(len(names), np.int64)
        return {name: int(total[k]) for k, name in enumerate(names)}

    def class_weights(self, labels: list, names: tuple[str, ...]) -> torch.Tensor | None:
        """`--weighted-loss`: each label's positives weighed by its negatives / positives (BCE's pos_weight)."""
        y = self.targets(labels)
        pos = y.sum(0).astype(np.float64)
        return torch.tensor(np.where(pos > 0, (len(y) - pos) / np.maximum(pos, 1), 1.0), dtype=torch.float32)

    def loss(self, logits, labels, weights, config) -> torch.Tensor:
        pos_weight = weights.to(torch.float32) if weights is not None else None
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=pos_weight)

    def outputs(self, logits: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-logits))

    def placeholder(self, seq: str, n_labels: int):
        return np.zeros(n_labels, np.uint8)

    def predicted(self, out, names):
        return [names[k] for k in np.flatnonzero(out >= 0.5)]

    def constant(self, out, names) -> str:
        sets = np.unique(np.asarray(out) >= 0.5, axis=0)
        return "predicts one label set" if len(out) > 1 and len(sets) == 1 else ""

    def row(self, rid: str, label, out) -> str:
        return f"{rid}\t{';'.join(label)}\t" + "\t".join(f"{v:.4f}" for v in out) + "\n"

    def report(self, y, out, names, ids, where, split, title) -> None:
        from protlm.tasks.report import write_label_sets

        write_label_sets(where / f"predictions_{split}.tsv", ids, y, out, names)

    def fit_linear(self, x, y, n_out, seed, class_weight):
        """One logistic regression per label; a label constant in training predicts that constant."""
        from sklearn.linear_model import LogisticRegression

        coef, intercept = np.zeros((n_out, x.shape[1])), np.zeros(n_out)
        for k in range(n_out):
            if len(np.unique(y[:, k])) < 2:
                intercept[k] = 30.0 if y[:, k].any() else -30.0
                continue
            clf = LogisticRegression(max_iter=500, C=1.0, class_weight=class_weight, random_state=seed)
            clf.fit(x, y[:, k])
            coef[k], intercept[k] = clf.coef_[0], clf.intercept_[0]
        return coef, intercept


KINDS: dict[str, Kind] = {k.name: k for k in (Kind(), Pair(), Residue(), MultiLabel(), Regression())}


def get_kind(kind: str | Kind) -> Kind:
    """A kind object from itself or its name (as protlm_task.json stores it)."""
    if isinstance(kind, Kind):
        return kind
    if kind not in KINDS:
        raise ProtlmError(f"unknown task kind {kind!r}; protlm knows {', '.join(KINDS)}")
    return KINDS[kind]
