"""Does attention find binding sites? Per-head interface scores against real complexes.

For a chain pair (A, B) of a structure, the pair is encoded as in pre-training
(`<s> A </s></s> B </s>`) and every residue of A gets, per layer and head, two scores:
- `to`: the attention it pays to the residues of B (its row mass on B);
- `from`: the attention it receives from the residues of B (its column mass from B's rows).
The same is done for B against A, so one chain pair gives two *cases*. Each case is scored per
head with ROC-AUC and precision at k (k = the number of true interface residues unless given)
against the interface labels (`structures.interface`), beside random scores (the same metrics over
many random permutations).

Heads are never chosen and scored on the same complex: over a folder, the best head is chosen on
all other complexes (leave one complex out) and scored on the held-out one. With one complex, the
best head is reported as in-sample (optimistic) and marked so.

Complexes weigh equally: one ribosome has more chain pairs than a dozen dimers together, so the
head choice and the headline AUC average each complex's mean over its cases; the mean pooled over
cases and the per-complex means are reported beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from protlm.attention.maps import AttentionModel
from protlm.attention.structures import INTERFACE_CUTOFF, Structure, interface

DIRECTIONS = ("to", "from")
N_RANDOM = 1000


@dataclass
class SiteCase:
    complex: str
    chain: str
    partner: str
    labels: np.ndarray  # (n,) bool interface residues of `chain`
    scores: np.ndarray  # (2, layers, heads, n): to / from

    @property
    def name(self) -> str:
        return f"{self.complex}:{self.chain}-{self.partner}"


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row of `scores` (..., n) against bool `labels` (n,), ties counted half."""
    from scipy.stats import rankdata

    pos, n = int(labels.sum()), len(labels)
    if pos == 0 or pos == n:
        return np.full(scores.shape[:-1], np.nan)
    ranks = rankdata(scores, axis=-1)
    return (ranks[..., labels].sum(-1) - pos * (pos + 1) / 2) / (pos * (n - pos))


def precision_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Fraction of true residues among the k top-scored residues, per row of `scores` (..., n)."""
    k = max(1, min(k, len(labels)))
    top = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    return labels[top].mean(-1)


def pair_cases(model: AttentionModel, structure: Structure, a: str, b: str, cutoff: float) -> list[SiteCase]:
    """The two cases (A against B, B against A) of one chain pair."""
    ca, cb = structure.chain(a), structure.chain(b)
    la, lb = interface(ca, cb, cutoff)
    att = model((ca.sequence, cb.sequence), f"{structure.id}:{a}-{b}", (a, b))
    ab, ba = att.block(0, 1), att.block(1, 0)  # (L, H, nA, nB), (L, H, nB, nA)
    scores_a = np.stack([ab.sum(-1), ba.sum(-2)])  # to B, from B
    scores_b = np.stack([ba.sum(-1), ab.sum(-2)])
    return [SiteCase(structure.id, a, b, la, scores_a), SiteCase(structure.id, b, a, lb, scores_b)]


@dataclass
class CaseResult:
    case: SiteCase
    auc: np.ndarray  # (2, L, H)
    p_at_k: np.ndarray  # (2, L, H)
    k: int
    random_auc: tuple[float, float]  # mean, std over random permutations
    random_p_at_k: float


def score_case(case: SiteCase, top_k: int | None, seed: int) -> CaseResult:
    k = top_k or int(case.labels.sum())
    rng = np.random.default_rng([seed, len(case.labels), int(case.labels.sum())])
    random = rng.random((N_RANDOM, len(case.labels)))
    r_auc = roc_auc(random, case.labels)
    return CaseResult(
        case,
        roc_auc(case.scores, case.labels),
        precision_at_k(case.scores, case.labels, k),
        k,
        (float(np.nanmean(r_auc)), float(np.nanstd(r_auc))),
        float(precision_at_k(random, case.labels, k).mean()),
    )


@dataclass
class SitesResult:
    model: str
    results: list[CaseResult]
    skipped: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.results[0].auc.shape

    def per_head(self, metric: str = "auc") -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) over cases of each (direction, layer, head)."""
        values = np.stack([getattr(r, metric) for r in self.results])
        return np.nanmean(values, 0), np.nanstd(values, 0)

    def by_complex(self) -> dict[str, list[CaseResult]]:
        """The cases of each complex, complexes in input order."""
        groups: dict[str, list[CaseResult]] = {}
        for r in self.results:
            groups.setdefault(r.case.complex, []).append(r)
        return groups

    def held_out(self) -> list[dict]:
        """Leave one complex out: the head with the best AUC on the other complexes, scored here. The other
        complexes weigh equally (the mean of each one's mean over its cases): pooled over cases, one
        ribosome of fifty chain pairs would choose the head for every other complex. With a single
        complex the head is chosen on it (in-sample, marked)."""
        groups = self.by_complex()
        means = {c: np.nanmean(np.stack([r.auc for r in rs]), 0) for c, rs in groups.items()}  # (2, L, H) each
        out = []
        for c, results in groups.items():
            others = [m for k, m in means.items() if k != c]
            in_sample = not others
            head = np.unravel_index(np.nanargmax(np.nanmean(np.stack(others or [means[c]]), 0)), self.shape)
            for r in results:
                out.append({
                    "case": r.case.name, "complex": c, "head": head_name(head), "in_sample": in_sample,
                    "auc": float(r.auc[head]), "p_at_k": float(r.p_at_k[head]), "k": r.k,
                    "random_auc": r.random_auc[0], "random_p_at_k": r.random_p_at_k,
                })  # fmt: skip
        return out

    def summary(self) -> dict:
        """Every number of the analysis. The headline (`held_out_auc_by_complex`) is the mean over
        complexes of each complex's mean over its cases, so every complex weighs the same; the mean
        pooled over all cases (`held_out_auc`) stays beside it, as do the per-complex means."""
        held = self.held_out()
        mean, std = self.per_head("auc")
        best = np.unravel_index(np.nanargmax(mean), self.shape)
        complexes = per_complex(held)
        return {
            "model": self.model,
            "n_cases": len(self.results),
            "complexes": sorted({r.case.complex for r in self.results}),
            "skipped": self.skipped,
            "selection": "leave one complex out" if not any(h["in_sample"] for h in held) else "in-sample (1 complex)",
            "held_out": held,
            "held_out_auc_by_complex": _mean_std([c["auc"] for c in complexes]),
            "held_out_p_at_k_by_complex": _mean_std([c["p_at_k"] for c in complexes]),
            "random_auc_by_complex": _mean_std([c["random_auc"] for c in complexes]),
            "per_complex": complexes,
            "held_out_auc": _mean_std([h["auc"] for h in held]),
            "held_out_p_at_k": _mean_std([h["p_at_k"] for h in held]),
            "random_auc": _mean_std([r.random_auc[0] for r in self.results]),
            "random_p_at_k": _mean_std([r.random_p_at_k for r in self.results]),
            "best_head_over_all_cases": {"head": head_name(best), "auc": float(mean[best]), "auc_std": float(std[best])},
            "per_head_auc": {d: {"mean": _round(mean[i]), "std": _round(std[i])} for i, d in enumerate(DIRECTIONS)},
            "per_head_p_at_k": {d: _round(self.per_head("p_at_k")[0][i]) for i, d in enumerate(DIRECTIONS)},
            "cases": [
                {"case": r.case.name, "n_residues": len(r.case.labels), "n_interface": int(r.case.labels.sum()),
                 "auc": {d: _round(r.auc[i]) for i, d in enumerate(DIRECTIONS)}, "random_auc": r.random_auc}
                for r in self.results
            ],
        }  # fmt: skip


def per_complex(held: list[dict]) -> list[dict]:
    """Each complex's held-out head and its mean AUC, P@k and random AUC over the complex's cases."""
    groups: dict[str, list[dict]] = {}
    for h in held:
        groups.setdefault(h["complex"], []).append(h)
    return [
        {"complex": c, "n_cases": len(hs), "head": hs[0]["head"],
         **{k: float(np.nanmean([h[k] for h in hs])) for k in ("auc", "p_at_k", "random_auc", "random_p_at_k")}}
        for c, hs in groups.items()
    ]  # fmt: skip


def head_name(index) -> str:
    d, layer, head = (int(x) for x in index)
    return f"{DIRECTIONS[d]} L{layer + 1}H{head + 1}"


def _mean_std(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(np.nanmean(arr)), "std": float(np.nanstd(arr)), "n": int(np.isfinite(arr).sum())}


def _round(a: np.ndarray) -> list:
    return np.round(np.asarray(a, dtype=float), 4).tolist()


def analyse(
    model: AttentionModel,
    structures: list[Structure],
    chains: tuple[str, str] | None = None,
    cutoff: float = INTERFACE_CUTOFF,
    top_k: int | None = None,
    seed: int = 0,
    log: Callable[[str], None] = lambda m: None,
) -> SitesResult:
    """Every chain pair with an interface (or the given pair) of every structure."""
    from protlm.errors import ProtlmError

    result = SitesResult(str(model.path), [])
    for st in structures:
        pairs = [chains] if chains else st.pairs(cutoff)
        for a, b in pairs:
            try:
                cases = pair_cases(model, st, a, b, cutoff)
            except ProtlmError as e:
                if chains and len(structures) == 1:
                    raise
                result.skipped.append(f"{st.id}:{a}-{b}: {e}")
                log(f"skipped {st.id}:{a}-{b}: {e}")
                continue
            result.results.extend(score_case(c, top_k, seed) for c in cases if 0 < c.labels.sum() < len(c.labels))
    if not result.results:
        raise ProtlmError(
            "no chain pair with an interface to score" + (f" ({'; '.join(result.skipped)})" if result.skipped else "")
        )
    return result
