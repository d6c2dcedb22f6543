"""Protein pairs: the binding / non-binding pair tables that pair pre-training and PPI tasks read."""

from protlm.pairs.build import build_pairs, builtin_pairs, pairs_stats
from protlm.pairs.generic import read_id_pairs
from protlm.pairs.splits import sample_negatives, split_pairs
from protlm.pairs.table import PAIR_COLUMNS, Pair, read_pairs, write_pairs

__all__ = [
    "PAIR_COLUMNS",
    "Pair",
    "build_pairs",
    "builtin_pairs",
    "pairs_stats",
    "read_id_pairs",
    "read_pairs",
    "sample_negatives",
    "split_pairs",
    "write_pairs",
]
