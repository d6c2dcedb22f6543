"""`--model baseline`: the simple reference printed beside every fine-tuning result.

- sequence tasks: amino-acid (20) + dipeptide (400) composition -> standardised -> logistic regression;
- pair tasks: the two proteins' compositions, as [a + b, |a - b|] when order carries no meaning
  (PPI) and as [a, b] otherwise (TCR, epitope); assemblies of k proteins: [sum, max - min] over the
  chains (the pair formula for k = 2);
- residue tasks: one-hot residues in a window of +-7 around each residue -> logistic regression
  (a GOR-style per-residue reference).
The linear model is the task kind's (tasks/kinds.py): multinomial logistic regression for classes, one
logistic regression per label for multi-label tasks, ridge regression for a regression target.
Saved as safetensors (weights, scaler) + JSON: nothing pickled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from protlm.errors import ProtlmError
from protlm.io import STANDARD
from protlm.io.atomic import output_dir, write_json
from protlm.tasks.data import IGNORE, Example
from protlm.tasks.kinds import Kind, get_kind

_AA = {c: i for i, c in enumerate(STANDARD)}
WINDOW = 7
MAX_RESIDUES = 300_000  # residues used to fit the residue baseline (whole chains, seeded sample)


def composition(seq: str) -> np.ndarray:
    """(420,) amino-acid and dipeptide frequencies over the 20 standard residues (others ignored)."""
    idx = np.array([_AA.get(c, -1) for c in seq], dtype=np.int64)
    out = np.zeros(420)
    ok = idx[idx >= 0]
    if len(ok):
        out[:20] = np.bincount(ok, minlength=20) / len(ok)
    a, b = idx[:-1], idx[1:]
    both = (a >= 0) & (b >= 0)
    if both.any():
        out[20:] = np.bincount(a[both] * 20 + b[both], minlength=400) / both.sum()
    return out


def window_onehot(seq: str, window: int = WINDOW) -> np.ndarray:
    """(L, (2w+1) * 21) one-hot of the residues around each residue (21st column: non-standard or off the end)."""
    idx = np.array([_AA.get(c, 20) for c in seq], dtype=np.int64)
    padded = np.concatenate([np.full(window, 20), idx, np.full(window, 20)])
    cols = np.stack([padded[k : k + len(seq)] for k in range(2 * window + 1)], axis=1)  # (L, 2w+1)
    out = np.zeros((len(seq), (2 * window + 1) * 21), dtype=np.float32)
    rows = np.repeat(np.arange(len(seq)), 2 * window + 1)
    out[rows, (np.arange(2 * window + 1) * 21 + cols).reshape(-1)] = 1
    return out


class Baseline:
    """Standardised features + the task kind's linear model (multinomial logistic regression for classes)."""

    def __init__(self, kind: str | Kind, n_classes: int, symmetric: bool = False):
        self.kind, self.n_classes, self.symmetric = get_kind(kind), n_classes, symmetric
        self.mean = self.scale = self.coef = self.intercept = None

    def features(self, examples: list[Example]) -> tuple[np.ndarray, np.ndarray]:
        """(X, y); for residue tasks one row per scored residue."""
        if self.kind.per_residue:
            xs, ys = [], []
            for ex in examples:
                keep = np.asarray(ex.label) != IGNORE
                xs.append(window_onehot(ex.parts[0])[keep])
                ys.append(np.asarray(ex.label)[keep])
            return np.concatenate(xs), np.concatenate(ys).astype(np.int64)
        feats = []
        for ex in examples:
            comp = [composition(p) for p in ex.parts]
            if self.kind.multi_part and self.symmetric:  # order-free, any number of chains
                comp = [np.sum(comp, 0), np.max(comp, 0) - np.min(comp, 0)]
            elif self.kind.multi_part and len(comp) != 2:
                raise ProtlmError(f"{ex.id}: {len(comp)} proteins; this task's baseline takes ordered pairs")
            feats.append(np.concatenate(comp))
        return np.asarray(feats), self.kind.targets([ex.label for ex in examples])

    def fit(self, examples: list[Example], seed: int = 0, class_weight: str | None = None) -> Baseline:
        if self.kind.per_residue:  # whole chains, in a seeded order, up to MAX_RESIDUES residues
            order = np.random.default_rng(seed).permutation(len(examples))
            budget = np.cumsum([len(examples[i].parts[0]) for i in order])
            examples = [examples[i] for i in order[: max(1, int(np.searchsorted(budget, MAX_RESIDUES)))]]
        x, y = self.features(examples)
        self.mean, self.scale = x.mean(0), x.std(0) + 1e-8
        self.coef, self.intercept = self.kind.fit_linear((x - self.mean) / self.scale, y, self.n_classes, seed,
                                                         class_weight)  # fmt: skip
        return self

    def predict_proba(self, examples: list[Example]) -> tuple[np.ndarray, np.ndarray]:
        """(y, outputs) with n rows per example or per scored residue: class probabilities (n, C), per-label
        probabilities (multi-label) or values (n,) (regression)."""
        ys, ps = [], []
        for start in range(0, len(examples), 512):  # chunks bound the memory of residue features
            x, y = self.features(examples[start : start + 512])
            ys.append(y)
            ps.append(self.kind.outputs(((x - self.mean) / self.scale) @ self.coef.T + self.intercept))
        return np.concatenate(ys), np.concatenate(ps)

    def save(self, path: Path, info: dict) -> None:
        output_dir(path)
        tensors = {"mean": self.mean, "scale": self.scale, "coef": self.coef, "intercept": self.intercept}
        save_file(
            {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()}, path / "baseline.safetensors"
        )
        meta = {"kind": self.kind.name, "n_classes": self.n_classes, "symmetric": self.symmetric}
        write_json(path / "protlm_task.json", {**info, "baseline": meta})

    @classmethod
    def load(cls, path: Path) -> Baseline:
        from protlm.models.loading import read_task_file

        meta = read_task_file(path / "protlm_task.json").get("baseline")
        if not isinstance(meta, dict) or not {"kind", "n_classes", "symmetric"} <= set(meta):
            raise ProtlmError(f"{path / 'protlm_task.json'}: not a baseline protlm wrote (no baseline settings)")
        model = cls(meta["kind"], meta["n_classes"], meta["symmetric"])
        t = load_file(path / "baseline.safetensors")
        model.mean, model.scale, model.coef, model.intercept = t["mean"], t["scale"], t["coef"], t["intercept"]
        return model
