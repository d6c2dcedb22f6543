"""How well scores rank measured fitness, as ProteinGym defines it (`performance_DMS_benchmarks.py`).

- `spearman`: Spearman's rank correlation of score and `DMS_score`; `n`: the variants.
- `auc`: ROC AUC of the score against `DMS_score_bin`.
- `mcc`: Matthews correlation of `DMS_score_bin` with the score cut at its median (>= median is 1).
- `ndcg`: NDCG over the top 10% by score (k = floor(n / 10)), gains = `DMS_score` min-max scaled to [0, 1].
- `top10_recall`: of the variants above the 90th percentile of `DMS_score`, the share also above the 90th
  percentile of the score.
A metric that is undefined on the data (one class only, a constant column) is NaN (null in JSON).
"""

from __future__ import annotations

import math

import numpy as np

TOP = 10  # percent: ndcg and top10_recall


def assay_metrics(dms_score: np.ndarray, score: np.ndarray, dms_bin: np.ndarray | None = None) -> dict:
    """{spearman, n, ndcg, top10_recall, auc, mcc} (auc and mcc when `dms_bin` is given)."""
    from scipy.stats import spearmanr

    y, s = np.asarray(dms_score, dtype=float), np.asarray(score, dtype=float)
    out = {"spearman": _nan_safe(lambda: spearmanr(y, s)[0]), "n": len(y), "ndcg": ndcg(y, s),
           "top10_recall": top_recall(y, s)}  # fmt: skip
    if dms_bin is not None:
        out["auc"], out["mcc"] = auc(dms_bin, s), mcc(dms_bin, s)
    return out


def _nan_safe(f) -> float:
    """f() as a float; NaN where it is undefined (scipy and sklearn warn or raise there)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(f())
        except ValueError:
            return math.nan


def auc(dms_bin: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return _nan_safe(lambda: roc_auc_score(dms_bin, score))  # one class only: undefined


def mcc(dms_bin: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    predicted = (np.asarray(score) >= np.median(score)).astype(int)
    return _nan_safe(lambda: matthews_corrcoef(dms_bin, predicted))


def ndcg(dms_score: np.ndarray, score: np.ndarray, top: float = TOP) -> float:
    """ProteinGym's `calc_ndcg`: DCG of the top floor(n * top%) by score over the ideal DCG (ties in the
    score broken by input order, where ProteinGym's unstable sort breaks them arbitrarily)."""
    y, s = np.asarray(dms_score, dtype=float), np.asarray(score, dtype=float)
    k = int(np.floor(len(y) * top / 100))
    if k == 0:
        return 0.0
    spread = y.max() - y.min()
    if spread == 0:
        return math.nan
    gains = (y - y.min()) / spread

    def dcg(order: np.ndarray) -> float:
        top_k = order[:k]
        return float(np.sum(gains[top_k] / np.log2(np.arange(2, k + 2))))

    ideal = dcg(np.argsort(-gains, kind="stable"))
    return dcg(np.argsort(-s, kind="stable")) / ideal if ideal > 0 else math.nan


def top_recall(dms_score: np.ndarray, score: np.ndarray, top: float = TOP) -> float:
    """ProteinGym's `calc_toprecall`: recall of the top `top`% by DMS_score among the top `top`% by score."""
    y, s = np.asarray(dms_score, dtype=float), np.asarray(score, dtype=float)
    true_top = y > np.percentile(y, 100 - top)
    if not true_top.any():
        return math.nan
    return float((true_top & (s > np.percentile(s, 100 - top))).sum() / true_top.sum())


def jsonable(metrics: dict) -> dict:
    """NaN as None (JSON has no NaN), numbers as Python numbers."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
