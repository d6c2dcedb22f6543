"""Task metrics from labels and predictions, by name (`METRICS`); each task kind lists the ones it reports.

Classification metrics take `y` (n,) true class indices and `prob` (n, C) probabilities; residue tasks
pass one row per scored residue, so Q3 / Q8 are per-residue accuracies over all residues of the split
(not averaged per protein, as in TAPE and NetSurfP). Regression metrics take `y` (n,) and the predicted
values (n,); multi-label metrics `y` (n, C) 0/1 and per-label probabilities (n, C).
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


def compute(names: tuple[str, ...], y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    return {name: METRICS[name](y, prob) for name in names}


# Why a metric has no value on a split (nan), by metric, as the results lines say it.
UNDEFINED = {
    "roc_auc": "one class in the split",
    "pr_auc": "one class in the split",
    "label_roc_auc": "no label with both classes in the split",
    "spearman": "constant labels or predictions",
    "pearson": "constant labels or predictions",
}


def metric_text(name: str, value: float, std: float | None = None, digits: int = 4) -> str:
    """A metric as the results lines print it: `0.8123`, `0.8123 ± 0.0100` over seeds, or `n/a (one class
    in the split)` where it is undefined: a one-example split printed `roc_auc nan ± 0.0000`, which reads
    as a failure of the run rather than of the split."""
    if value is None or np.isnan(value):
        return f"n/a ({UNDEFINED.get(name, 'no examples to score' if name in _NEED_EXAMPLES else 'undefined')})"
    return f"{value:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single seed)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


# ------------------------------------------------------------------ regression: y (n,) numbers, pred (n,)


def spearman(y: np.ndarray, pred: np.ndarray) -> float:
    """Spearman rank correlation (ties averaged); nan when either side is constant."""
    from scipy.stats import spearmanr

    return float(spearmanr(y, pred).statistic) if _varies(y, pred) else float("nan")


def pearson(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.corrcoef(y, pred)[0, 1]) if _varies(y, pred) else float("nan")


def rmse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - pred) ** 2))) if len(y) else float("nan")


def mae(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y) - pred))) if len(y) else float("nan")


def _varies(y: np.ndarray, pred: np.ndarray) -> bool:
    return len(y) > 1 and np.ptp(y) > 0 and np.ptp(pred) > 0


# ------------------------------------------------------------------ multi-label: y (n, C) 0/1, prob (n, C)


def micro_f1(y: np.ndarray, prob: np.ndarray) -> float:
    """F1 over every (example, label) decision, at probability 0.5."""
    return float(skm.f1_score(y, prob >= 0.5, average="micro", zero_division=0))


def label_macro_f1(y: np.ndarray, prob: np.ndarray) -> float:
    """Unweighted mean over labels of each label's F1, at probability 0.5."""
    return float(skm.f1_score(y, prob >= 0.5, average="macro", zero_division=0))


def exact_match(y: np.ndarray, prob: np.ndarray) -> float:
    """Share of examples whose predicted label set is exactly the true one."""
    return float(np.mean(np.all((prob >= 0.5) == (y > 0), axis=1))) if len(y) else float("nan")


def label_roc_auc(y: np.ndarray, prob: np.ndarray) -> float:
    """Mean ROC-AUC over the labels that have both positives and negatives in `y`; nan when none has."""
    scores = [skm.roc_auc_score(y[:, k], prob[:, k]) for k in range(y.shape[1]) if len(np.unique(y[:, k])) == 2]
    return float(np.mean(scores)) if scores else float("nan")


_NEED_EXAMPLES = ("accuracy", "q3", "q8", "rmse", "mae", "exact_match")  # nan only on an empty split

METRICS = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "f1": f1,
    "mcc": mcc,
    "roc_auc": roc_auc,
    "pr_auc": pr_auc,
    "q3": accuracy,
    "q8": accuracy,
    "spearman": spearman,
    "pearson": pearson,
    "rmse": rmse,
    "mae": mae,
    "micro_f1": micro_f1,
    "label_macro_f1": label_macro_f1,
    "exact_match": exact_match,
    "label_roc_auc": label_roc_auc,
}


def paired_bootstrap(metric: str, y: np.ndarray, probs_a: list[np.ndarray], probs_b: list[np.ndarray],
                     groups: np.ndarray | None = None, n: int = 1000, seed: int = 0) -> dict:  # fmt: skip
    """Model A minus model B on one test set, both scored on the same resamples of it: the difference of the
    metric's mean over seeds, its 95% interval, and the share of resamples where A is not better (a one-sided
    p-value). `probs_*`: each seed's outputs on the same rows in the same order. `groups` (e.g. the protein of
    each residue) resamples whole groups, since rows of one protein are not independent."""
    fn = METRICS[metric]
    keys, inverse = np.unique(np.arange(len(y)) if groups is None else np.asarray(groups), return_inverse=True)
    members = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(keys)))])

    def rows(picked: np.ndarray) -> np.ndarray:
        return np.concatenate([members[starts[g] : starts[g + 1]] for g in picked])

    def mean(idx: np.ndarray, probs: list[np.ndarray]) -> float:
        return float(np.nanmean([fn(y[idx], p[idx]) for p in probs]))

    every = np.arange(len(y))
    diff = mean(every, probs_a) - mean(every, probs_b)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n):
        idx = rows(rng.integers(0, len(keys), len(keys))) if groups is not None else rng.integers(0, len(y), len(y))
        boots.append(mean(idx, probs_a) - mean(idx, probs_b))
    boots = np.asarray(boots)
    lo, hi = np.nanpercentile(boots, [2.5, 97.5])
    return {"metric": metric, "diff": diff, "ci95": [float(lo), float(hi)],
            "p_a_not_better": float(np.mean(boots[~np.isnan(boots)] <= 0)), "n": int(len(y)),
            "groups": int(len(keys)), "resamples": n}  # fmt: skip
