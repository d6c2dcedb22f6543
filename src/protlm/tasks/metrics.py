"""Task metrics from labels and predicted class probabilities.

Every function takes `y` (n,) true class indices and `prob` (n, C) probabilities; residue tasks pass
one row per scored residue, so Q3 / Q8 are per-residue accuracies over all residues of the split
(not averaged per protein, as in TAPE and NetSurfP).
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def accuracy(y: np.ndarray, prob: np.ndarray) -> float:
    return float(np.mean(prob.argmax(1) == y)) if len(y) else float("nan")


def macro_f1(y: np.ndarray, prob: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in `y` or in the predictions."""
    return float(skm.f1_score(y, prob.argmax(1), average="macro", zero_division=0))


def f1(y: np.ndarray, prob: np.ndarray) -> float:
    """F1 of the positive class (index 1) of a binary task."""
    return float(skm.f1_score(y, prob.argmax(1), pos_label=1, average="binary", zero_division=0))


def mcc(y: np.ndarray, prob: np.ndarray) -> float:
    """Matthews correlation (multi-class generalisation for C > 2); 0 when only one class occurs."""
    pred = prob.argmax(1)
    return float(skm.matthews_corrcoef(y, pred)) if len(np.union1d(y, pred)) > 1 else 0.0


def roc_auc(y: np.ndarray, prob: np.ndarray) -> float:
    """Area under the ROC curve of the positive class; nan unless binary with both classes present."""
    return float(skm.roc_auc_score(y, prob[:, 1])) if _binary(y, prob) else float("nan")


def pr_auc(y: np.ndarray, prob: np.ndarray) -> float:
    """Average precision of the positive class (area under the precision-recall curve)."""
    return float(skm.average_precision_score(y, prob[:, 1])) if _binary(y, prob) else float("nan")


def _binary(y: np.ndarray, prob: np.ndarray) -> bool:
    """A two-class task with both classes present (ROC / PR are undefined otherwise)."""
    return prob.shape[1] == 2 and len(np.unique(y)) == 2


METRICS = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "f1": f1,
    "mcc": mcc,
    "roc_auc": roc_auc,
    "pr_auc": pr_auc,
    "q3": accuracy,
    "q8": accuracy,
}


def compute(names: tuple[str, ...], y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    return {name: METRICS[name](y, prob) for name in names}


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single seed)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
