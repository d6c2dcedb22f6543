"""Protein pairs: the binding / non-binding pair tables that pair pre-training and PPI tasks read."""

from protlm.pairs.table import PAIR_COLUMNS, Pair, read_pairs, write_pairs

__all__ = ["PAIR_COLUMNS", "Pair", "read_pairs", "write_pairs"]
