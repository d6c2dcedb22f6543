"""Residue features for residue-level tasks under multi-residue (BPE) tokens.

A BPE token covers one or more consecutive residues. Residue-level labels stay per residue: every
residue r is mapped to the token t(r) that contains it and to its offset inside that token
(`residue_map`, whose home is `protlm/align.py`), and the model predicts one label per residue from
(state of t(r), residue identity, offset). So a token that crosses a label boundary (e.g. the last
helix residue and the first coil residue) still gets two different labels, and no residue is ever
dropped or counted twice. Here: the residue identity codes and the offset cap of the residue head.
"""

from __future__ import annotations

import numpy as np

from protlm.align import residue_map
from protlm.io import ALPHABET, RARE

__all__ = ["AA_CODES", "MAX_OFFSET", "N_AA", "aa_codes", "residue_map"]  # residue_map: still importable from here

AA_CODES = {c: i + 1 for i, c in enumerate(ALPHABET + RARE)}  # 0 = padding
N_AA = len(AA_CODES) + 1
MAX_OFFSET = 16  # offsets inside longer tokens share the last embedding


def aa_codes(seq: str) -> np.ndarray:
    return np.fromiter((AA_CODES[c] for c in seq), dtype=np.int64, count=len(seq))
