"""Which tokens a pseudo-log-likelihood scorer masks, for any tokenizer (BPE tokens span several residues).

A substitution can change the tokenization around it, so the wild type and the mutant are tokenized each
on its own, in full, and compared token by token: a token is *unchanged* when the other sequence has a
token with the same id over the same residues (a substitution keeps every residue where it is), and
*changed* otherwise. The tokens scored are the changed ones plus `context` tokens either side (every
content token for `pll`). Positions are indices into the assembled inputs (special tokens included).

A mutant term and the wild-type term of the token it matches cancel exactly when both see windows of
identical content at the same offset (`cancelled`); that happens only over proteins longer than the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protlm.errors import ProtlmError
from protlm.variants.passes import centred_window


@dataclass(frozen=True)
class Tokens:
    """One sequence as a model input, and the residues each content token covers."""

    ids: np.ndarray  # (N,) model input ids, special tokens included
    first: int  # index of the first content token
    starts: np.ndarray  # (n,) first residue of each content token
    ends: np.ndarray  # (n,) one past its last residue

    @staticmethod
    def encode(seq: str, tokenizer) -> Tokens:
        """`seq` through a `ProteinTokenizer`: its content ids, assembled with the template's specials."""
        content = tokenizer.encode(seq)
        ends = np.cumsum(tokenizer.residue_lengths[content])
        if not len(content) or ends[-1] != len(seq):
            raise ProtlmError(f"{tokenizer.name}: the tokenizer does not cover the sequence residue by residue")
        starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
        return Tokens(tokenizer.assemble([content]), tokenizer.template.start, starts, ends)

    @property
    def last(self) -> int:
        """One past the last content token."""
        return self.first + len(self.starts)


def match(wt: Tokens, mut: Tokens) -> np.ndarray:
    """(len(mut.ids),) for each token of the mutant's input, the index of the same token in the wild type's
    (same id, same residues), or -1 for a changed token; the specials match their own."""
    k = np.clip(np.searchsorted(wt.starts, mut.starts), 0, len(wt.starts) - 1)
    same = (wt.starts[k] == mut.starts) & (wt.ends[k] == mut.ends)
    same &= wt.ids[wt.first + k] == mut.ids[mut.first : mut.last]
    out = np.empty(len(mut.ids), dtype=np.int64)
    out[: mut.first] = np.arange(mut.first)
    out[mut.first : mut.last] = np.where(same, wt.first + k, -1)
    out[mut.last :] = wt.last + np.arange(len(mut.ids) - mut.last)
    return out


def changed_positions(t: Tokens, matched: np.ndarray) -> np.ndarray:
    """Content positions of `t` that no token of the other sequence matches (`matched`: (N,) bool)."""
    return t.first + np.flatnonzero(~matched[t.first : t.last])


def selected(t: Tokens, changed: np.ndarray, context: int | None) -> np.ndarray:
    """Content positions to score: the changed ones and `context` tokens either side (None: all)."""
    if context is None:
        return np.arange(t.first, t.last)
    near = np.zeros(len(t.ids), dtype=bool)
    for offset in range(-context, context + 1):
        near[np.clip(changed + offset, 0, len(t.ids) - 1)] = True
    near[: t.first], near[t.last :] = False, False
    return np.flatnonzero(near)


def cancelled(wt: Tokens, mut: Tokens, to_wt: np.ndarray, positions: np.ndarray, window: int) -> np.ndarray:
    """(len(positions),) bool: mutant token j, masked, sees the same window content at the same offset as
    the wild-type token it matches, so both log-probabilities are equal. Checked in O(1): the window holds
    no changed token, so its tokens map one to one, in order, onto a run of the wild type's."""
    if len(mut.ids) <= window and len(wt.ids) <= window:  # whole inputs: equal only if nothing changed
        return np.full(len(positions), bool((to_wt >= 0).all() and len(mut.ids) == len(wt.ids)))
    unmatched = np.concatenate([[0], np.cumsum(to_wt < 0)])
    out = np.zeros(len(positions), dtype=bool)
    for k, j in enumerate(positions.tolist()):
        a, b = centred_window(j, len(mut.ids), window)
        j_wt = int(to_wt[j])
        if j_wt < 0 or unmatched[b] != unmatched[a]:
            continue
        a_wt, b_wt = centred_window(j_wt, len(wt.ids), window)
        out[k] = b - a == b_wt - a_wt and j - a == j_wt - a_wt and to_wt[a] == a_wt and to_wt[b - 1] == b_wt - 1
    return out
