"""Residue <-> token alignment under multi-residue (BPE) tokens.

A BPE token covers one or more consecutive residues, so every residue r lies in exactly one token t(r), at
an offset inside it. `residue_map` gives both from the tokenizer's residues per token
(`ProteinTokenizer.residue_lengths`), and refuses a tokenizer whose tokens do not spell the sequence residue
by residue. Residue-level tasks (`tasks/batches.py`) gather token states per residue with it; attention
maps (`attention/maps.py`) turn token rows and columns into residue ones.
"""

from __future__ import annotations

import numpy as np

from protlm.errors import ProtlmError


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
