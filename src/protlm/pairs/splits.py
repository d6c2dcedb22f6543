"""Pair splits and negative sampling.

- `random`: each pair goes to train/dev/test at random (proteins can appear on both sides).
- `strict`: each *protein* goes to exactly one split (an optional `groups` map keeps, e.g., a
  sequence-identity cluster together); a pair is kept only when both proteins share a split.
  A pair lands in split k with probability p_k^2, so proteins are drawn with p_k proportional to
  sqrt(f_k) for the kept pairs to follow the requested fractions f (80/10/10 by default). Pairs
  across splits are counted as dropped. No test protein is ever seen in training, as in the
  paper's strict split and PEER's PPI sets.

Negatives: for each split, random pairs of that split's proteins that are not a known positive
pair (anywhere), not self-pairs, of one organism and not already drawn, `per_positive` of them per
positive, from a seeded generator (`pairs.negatives.NegativePool`, the sampler pre-training uses).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np

from protlm.errors import ProtlmError
from protlm.hashing import bucket, unit
from protlm.pairs.negatives import NegativePool
from protlm.pairs.table import SPLITS, Pair


def split_pairs(
    pairs: list[Pair],
    mode: str = "strict",
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    groups: dict[str, str] | None = None,
) -> tuple[list[Pair], Counter]:
    """Assign splits; returns (kept pairs, counts of pairs dropped by reason)."""
    if mode not in ("random", "strict"):
        raise ProtlmError(f"--split must be random or strict, got {mode!r}")
    if abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise ProtlmError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    dropped: Counter = Counter()
    out = []
    if mode == "strict":
        roots = np.sqrt(np.asarray(fractions, dtype=float))
        protein_fractions = tuple(float(x) for x in roots / roots.sum())
    for p in pairs:
        if mode == "random":
            out.append(replace(p, split=bucket(unit(f"{p.id_a}|{p.id_b}", seed), fractions)))
            continue
        ga, gb = (groups or {}).get(p.id_a, p.id_a), (groups or {}).get(p.id_b, p.id_b)
        sa, sb = bucket(unit(ga, seed), protein_fractions), bucket(unit(gb, seed), protein_fractions)
        if sa == sb:
            out.append(replace(p, split=sa))
        else:
            dropped["pair across strict splits"] += 1
    return out, dropped


def empty_split_warning(sizes: dict, mode: str) -> str:
    """A warning ('' when none) naming the splits that came out without a positive pair. A strict split
    keeps a pair only when both proteins fall in one split, so on a small or densely linked set (80
    pairs of 96 proteins) dev can end up empty, and `finetune` would have nothing to select on."""
    empty = [s for s in SPLITS if not (sizes.get(s) or {}).get("positives")]
    if not empty:
        return ""
    why = (
        "a strict split keeps a pair only when both proteins fall in the same split; give more pairs, or use "
        "--split random (pairs split at random: a protein may then be seen in training and in evaluation)"
        if mode == "strict"
        else "give more pairs"
    )
    return f"warning: no positive pairs in {' and '.join(empty)}: {why}"


def sample_negatives(positives: list[Pair], per_positive: float = 1.0, seed: int = 0) -> list[Pair]:
    """Label-0 pairs drawn within each split from that split's proteins, by the one sampler
    (`NegativePool`): never a known positive (of any split), a self-pair or another organism's
    protein, each unordered pair at most once."""
    rng = np.random.default_rng(seed)
    known = [(p.id_a, p.id_b) for p in positives]
    out: list[Pair] = []
    for split in SPLITS:
        members = [p for p in positives if p.split == split]
        seqs = {p.id_a: p.seq_a for p in members} | {p.id_b: p.seq_b for p in members}
        ids = sorted(seqs)
        pool = NegativePool.from_ids(np.arange(len(ids)), ids, known)
        drawn = pool.draw(int(round(per_positive * len(members))), rng, distinct=True, rounds=50)
        pairs = sorted((min(ids[a], ids[b]), max(ids[a], ids[b])) for a, b in drawn.tolist())
        out += [Pair(a, b, seqs[a], seqs[b], 0, split) for a, b in pairs]
    return out
