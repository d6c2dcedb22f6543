"""Residue <-> token alignment for residue-level tasks under multi-residue (BPE) tokens.

A BPE token covers one or more consecutive residues. Residue-level labels stay per residue: every
residue r is mapped to the token t(r) that contains it and to its offset inside that token, and
the model predicts one label per residue from (state of t(r), residue identity, offset). So a
token that crosses a label boundary (e.g. the last helix residue and the first coil residue) still
gets two different labels, and no residue is ever dropped or counted twice.
"""

from __future__ import annotations

import numpy as np

from protlm.errors import ProtlmError
from protlm.io import ALPHABET, RARE

AA_CODES = {c: i + 1 for i, c in enumerate(ALPHABET + RARE)}  # 0 = padding
N_AA = len(AA_CODES) + 1
MAX_OFFSET = 16  # offsets inside longer tokens share the last embedding


def residue_map(token_ids: np.ndarray, lengths: np.ndarray, n_residues: int) -> tuple[np.ndarray, np.ndarray]:
    """(token index of each residue, offset of the residue inside its token), each (n_residues,).

    `token_ids` are the protein's content tokens (no specials); `lengths` is `ProteinTokenizer.residue_lengths`.
    """
    per_token = lengths[np.asarray(token_ids, dtype=np.int64)]
    if int(per_token.sum()) != n_residues or (per_token <= 0).any():
        raise ProtlmError(
            f"tokenizer does not cover the sequence residue by residue ({int(per_token.sum())} residues in tokens "
            f"vs {n_residues} in the sequence): residue tasks need a tokenizer whose tokens spell residues"
        )
    token_of = np.repeat(np.arange(len(per_token)), per_token)
    starts = np.cumsum(per_token) - per_token  # first residue of each token
    offset = np.arange(n_residues) - starts[token_of]
    return token_of, offset


def aa_codes(seq: str) -> np.ndarray:
    return np.fromiter((AA_CODES[c] for c in seq), dtype=np.int64, count=len(seq))
