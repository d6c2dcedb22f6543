"""Contacts from attention, as ESM does it (Rao et al. 2021): symmetrise, APC, L1 logistic regression.

For one chain encoded alone (`<s> A </s>`), every head's residue x residue map (`maps.py`) is
symmetrised (A + A^T) and corrected with the average product correction
APC(F)_ij = F_ij - F_i. F_.j / F_.. . The layer x head values of each residue pair (i, j) with
|i - j| >= 6 are the features of an L1-regularised logistic regression, fitted on a few structures
(`fit`; features standardised, C = 0.15 as in ESM) and saved beside the model (`contact_regression.safetensors` + `.json`). Without a fitted
regression, `predict` falls back to the mean APC map over all heads (unsupervised, and said so).

Precision at L / k: the fraction of true contacts (`structures.contact_map`: Cbeta < 8 A) among the
L / k highest-scored pairs of a separation range: short 6-11, medium 12-23, long >= 24.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protlm.attention.maps import AttentionModel
from protlm.attention.structures import Chain, contact_map
from protlm.errors import ProtlmError
from protlm.io.atomic import output_dir, write_json
from protlm.io.structured import read_json

MIN_SEPARATION = 6
RANGES = {"short": (6, 11), "medium": (12, 23), "long": (24, None)}
FRACTIONS = {"L": 1, "L/2": 2, "L/5": 5}
REGRESSION = "contact_regression"


def apc(f: np.ndarray) -> np.ndarray:
    """Average product correction over the last two axes: F - F_i. F_.j / F_.. ."""
    row, col, total = f.sum(-1, keepdims=True), f.sum(-2, keepdims=True), f.sum((-1, -2), keepdims=True)
    return f - row * col / np.where(total == 0, 1, total)


def features(attention: np.ndarray) -> np.ndarray:
    """(L, H, N, N) residue attention -> (N, N, L * H) symmetrised, APC-corrected features."""
    sym = attention + np.swapaxes(attention, -1, -2)
    corrected = apc(sym)
    n_layers, n_heads, n, _ = corrected.shape
    return corrected.reshape(n_layers * n_heads, n, n).transpose(1, 2, 0)


def pair_mask(n: int, lo: int = MIN_SEPARATION, hi: int | None = None) -> np.ndarray:
    """(n, n) bool upper triangle with lo <= j - i (<= hi)."""
    sep = np.arange(n)[None, :] - np.arange(n)[:, None]
    mask = sep >= lo
    return mask & (sep <= hi) if hi is not None else mask


def precision_at(scores: np.ndarray, contacts: np.ndarray, lo: int, hi: int | None, top: int) -> float:
    """Fraction of true contacts among the `top` best-scored pairs with separation in [lo, hi]."""
    mask = pair_mask(len(scores), lo, hi)
    s, c = scores[mask], contacts[mask]
    if len(s) == 0 or top <= 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")[:top]
    return float(c[order].mean())


def precision_table(scores: np.ndarray, contacts: np.ndarray) -> dict[str, dict[str, float]]:
    """{range: {"L": p, "L/2": p, "L/5": p}} for one chain."""
    n = len(scores)
    return {
        name: {f: precision_at(scores, contacts, lo, hi, n // k) for f, k in FRACTIONS.items()}
        for name, (lo, hi) in RANGES.items()
    }


@dataclass
class ContactRegression:
    """Logistic regression on standardised features (APC values are small and differ by head)."""

    coef: np.ndarray  # (L * H,)
    intercept: float
    mean: np.ndarray  # (L * H,) feature standardisation
    scale: np.ndarray
    meta: dict

    def predict(self, feats: np.ndarray) -> np.ndarray:
        z = ((feats - self.mean) / self.scale) @ self.coef + self.intercept
        return 1 / (1 + np.exp(-z))

    def save(self, directory: Path) -> Path:
        from safetensors.numpy import save_file

        output_dir(directory)
        tensors = {"coef": self.coef, "intercept": np.array([self.intercept]), "mean": self.mean, "scale": self.scale}
        save_file(
            {k: np.asarray(v, dtype=np.float64) for k, v in tensors.items()}, directory / f"{REGRESSION}.safetensors"
        )
        write_json(directory / f"{REGRESSION}.json", self.meta)
        return directory / f"{REGRESSION}.safetensors"

    @classmethod
    def load(cls, directory: Path) -> ContactRegression | None:
        from safetensors.numpy import load_file

        path = directory / f"{REGRESSION}.safetensors"
        if not path.is_file():
            return None
        t = load_file(path)
        meta = read_json(directory / f"{REGRESSION}.json")
        return cls(t["coef"], float(t["intercept"][0]), t["mean"], t["scale"], meta)


def chain_features(model: AttentionModel, chain: Chain, rid: str) -> np.ndarray:
    return sequence_features(model, chain.sequence, rid, chain.name)


def sequence_features(model: AttentionModel, sequence: str, rid: str, name: str | None = None) -> np.ndarray:
    """(N, N, L * H) features of one protein encoded alone: nothing but its sequence is needed."""
    return features(model((sequence,), rid, (name or rid,)).attention)


def fit(model: AttentionModel, chains: list[tuple[str, Chain]], c: float = 0.15, seed: int = 0) -> ContactRegression:
    """L1 logistic regression over layer x head APC features of all pairs |i - j| >= 6 of `chains`."""
    from sklearn.linear_model import LogisticRegression

    xs, ys = [], []
    for rid, chain in chains:
        feats, mask = chain_features(model, chain, rid), pair_mask(len(chain))
        xs.append(feats[mask])
        ys.append(contact_map(chain)[mask])
    x, y = np.concatenate(xs), np.concatenate(ys)
    if y.all() or not y.any():
        raise ProtlmError("contact fit needs pairs both in and out of contact")
    mean, scale = x.mean(0), x.std(0) + 1e-12
    clf = LogisticRegression(l1_ratio=1.0, C=c, solver="liblinear", random_state=seed, max_iter=1000)
    clf.fit((x - mean) / scale, y)
    meta = {
        "model": str(model.path), "structures": [rid for rid, _ in chains], "n_pairs": int(len(y)),
        "n_contacts": int(y.sum()), "C": c, "penalty": "l1", "min_separation": MIN_SEPARATION,
        "layers": model.n_layers, "heads": model.n_heads, "nonzero": int((clf.coef_ != 0).sum()),
    }  # fmt: skip
    return ContactRegression(clf.coef_[0], float(clf.intercept_[0]), mean, scale, meta)


def method(model: AttentionModel, regression: ContactRegression | None) -> str:
    """How `predict` scores contacts with this model and regression, in words."""
    if regression is not None:
        return f"L1 logistic regression fitted on {', '.join(regression.meta['structures'])}"
    if model.has_contact_head:
        return "ESM-2's own contact head (its regression over APC-corrected attention)"
    return "no fitted regression (protlm contacts fit): mean APC map over all heads, unsupervised"


def predict(model: AttentionModel, chain: Chain, rid: str, regression: ContactRegression | None) -> np.ndarray:
    """(N, N) contact scores of a structure's chain (its sequence alone: `predict_sequence`)."""
    return predict_sequence(model, chain.sequence, rid, regression)


def predict_sequence(
    model: AttentionModel, sequence: str, rid: str, regression: ContactRegression | None
) -> np.ndarray:
    """(N, N) symmetric contact scores from the sequence alone, as ESM's contact head: a fitted
    regression's probabilities; else ESM-2's own contact head where the model has one; else the mean
    APC map. A structure is needed only to fit the regression and to measure precision."""
    if regression is None and model.has_contact_head:
        scores = model.esm_contacts(sequence)
        return (scores + scores.T) / 2
    feats = sequence_features(model, sequence, rid)
    if regression is not None:
        if len(regression.coef) != feats.shape[-1]:
            raise ProtlmError(
                f"the contact regression has {len(regression.coef)} features, this model {feats.shape[-1]} (fit it again)"
            )
        scores = regression.predict(feats)
    else:
        scores = feats.mean(-1)
    return (scores + scores.T) / 2


def write_contact_maps(model: AttentionModel, records, regression: ContactRegression | None, out: Path,
                       source: str | Path) -> int:  # fmt: skip
    """`OUT.npz` with `ID.contacts` (N, N) float32 scores and `ID.sequence` per record, and `_meta`
    (JSON: model, how the scores were made). Members are named as `attention export` names them, written
    as computed, into a temporary file renamed into place; a record too long for the model is an error
    naming it. Returns the count."""
    import json
    import zipfile

    from protlm.attention.maps import TooLong, write_npz_member
    from protlm.errors import InputError
    from protlm.io.atomic import atomic_open
    from protlm.io.embeddings import member_name

    written: list[str] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "wb") as fh, zipfile.ZipFile(fh, "w", allowZip64=True) as zf:
        for rec in records:
            name = member_name(rec.id)
            if name in written:
                raise ProtlmError(f"{out}: id {rec.id!r} is written twice (output names must be unique)")
            written.append(name)
            if ":" in rec.seq:  # io.inference.CHAIN_SEP: contacts are of one chain encoded alone
                raise InputError(
                    source, "one chain per record: contacts of chains joined by ':' are not made", record=rec.id
                )
            try:
                scores = predict_sequence(model, rec.seq, rec.id, regression)
            except TooLong as e:
                raise InputError(source, e.reason, record=rec.id) from None
            write_npz_member(zf, f"{name}.contacts", scores.astype(np.float32))
            write_npz_member(zf, f"{name}.sequence", np.array(rec.seq))
        meta = {"model": str(model.path), "scores": method(model, regression), "ids": written}
        write_npz_member(zf, "_meta", np.array(json.dumps(meta)))
    return len(written)
