"""Zero-shot variant scores from a masked LM (docs/variants.md has the formulas).

- `masked-marginal` (default): for each mutated position i, the wild type with i masked;
  score = sum over mutated i of log p(mt_i) - log p(wt_i). One pass per distinct mutated position,
  shared by every variant of the protein.
- `wt-marginal`: the same sum read off one unmasked pass over the wild type.
- `pll`: PLL(mutant) - PLL(wild type), PLL(x) = sum over tokens j of log p(x_j | x with j masked).
- `span`: the PLL difference over the tokens whose tokenization changed plus `context` tokens either side
  (variants/spans.py). Exact for tokenizers whose tokens span several residues (BPE), where residue
  marginals are undefined: `masked-marginal` and `wt-marginal` switch to it there.

Every pass sees ProteinGym's window of the model's length centred on its masked (or read) token
(`passes.centred_window`); proteins that fit are seen whole. Higher scores mean predicted fitter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from protlm.device import inference_dtype, precision_name
from protlm.errors import ProtlmError
from protlm.io.validate import STANDARD
from protlm.models.loading import window_tokens
from protlm.variants.mutants import Variant, apply, check, parse_mutant
from protlm.variants.passes import Passes
from protlm.variants.spans import Tokens, cancelled, changed_positions, match, selected

STRATEGIES = ("masked-marginal", "wt-marginal", "pll", "span")
MARGINALS = ("masked-marginal", "wt-marginal")


@dataclass(frozen=True)
class ScoreOptions:
    strategy: str = "masked-marginal"
    context: int = 2  # span: tokens of context either side of the changed ones
    tokens_per_batch: int = 16384
    max_tokens: int | None = None  # the window (default: the model's positions, at most 2,048 for dense attention)
    precision: str = "auto"  # auto | fp32 | bf16
    chunk: int = 32768  # pll / span: log-probabilities requested per round of passes (bounds memory)

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ProtlmError(f"--strategy {self.strategy!r}: choose from {', '.join(STRATEGIES)}")
        if self.context < 0 or self.tokens_per_batch <= 0 or self.chunk <= 0:
            raise ProtlmError("--context must be >= 0, --tokens-per-batch and the chunk > 0")
        if self.max_tokens is not None and self.max_tokens < 3:
            raise ProtlmError(f"--max-tokens {self.max_tokens}: a window needs at least 3 tokens")


class VariantScorer:
    """Scores substitution variants of a wild type with an HF masked LM and its `ProteinTokenizer`."""

    def __init__(self, model, tokenizer, options: ScoreOptions = ScoreOptions()):
        options.validate()
        self.tokenizer, self.options = tokenizer, options
        self.per_residue = int(tokenizer.residue_lengths.max()) <= 1  # ESM-2, ProtBERT, protlm's char
        self.strategy = options.strategy
        if self.strategy in MARGINALS and not self.per_residue:
            self.strategy = "span"  # residue marginals are undefined when tokens span several residues
        self.window = window_tokens(model.config, options.max_tokens)
        dtype = inference_dtype(options.precision, next(model.parameters()).device)
        self.passes = Passes(model, tokenizer.mask_token_id, tokenizer.pad_token_id, self.window,
                             options.tokens_per_batch, dtype)  # fmt: skip
        self.precision = precision_name(dtype)

    def score(self, wt: str, variants: Sequence[Variant], progress=None) -> np.ndarray:
        """(n,) float64 scores of `variants` (checked against `wt`); higher = predicted fitter. `progress`: a
        bar (`protlm.progress`) that counts the forward passes."""
        for v in variants:
            check(v, wt)
        self.passes.progress = progress
        try:
            return self._marginals(wt, variants) if self.strategy in MARGINALS else self._plls(wt, variants)
        finally:
            self.passes.progress = None

    # ------------------------------------------------------------------ masked-marginal, wt-marginal

    def _marginals(self, wt: str, variants: Sequence[Variant]) -> np.ndarray:
        t = Tokens.encode(wt, self.tokenizer)  # one token per residue: residue i is token t.first + i
        letters = self._letter_ids()
        sites = sorted({(m.pos, a) for v in variants for m in v for a in (m.wt, m.mt)})
        masked = self.strategy == "masked-marginal"
        requests = [(0, t.first + p if masked else -1, t.first + p, t.first + p, letters[a]) for p, a in sites]
        log_p = dict(zip(sites, self.passes.log_probs([t.ids], np.array(requests)).tolist(), strict=True))
        return np.array([sum(log_p[(m.pos, m.mt)] - log_p[(m.pos, m.wt)] for m in v) for v in variants])

    def _letter_ids(self) -> dict[str, int]:
        """The token id of each amino acid (a per-residue vocabulary has one)."""
        ids = dict(zip(STANDARD, self.tokenizer.encode_batch(list(STANDARD)), strict=True))
        bad = [a for a, i in ids.items() if len(i) != 1]
        if bad:
            raise ProtlmError(f"{self.tokenizer.name}: no single token for amino acid(s) {''.join(bad)}")
        return {a: int(i[0]) for a, i in ids.items()}

    # ------------------------------------------------------------------ pll, span

    def _plls(self, wt: str, variants: Sequence[Variant]) -> np.ndarray:
        """Token PLL differences, in rounds of at most `chunk` requests; wild-type terms computed once."""
        context = None if self.strategy == "pll" else self.options.context
        wt_tokens = Tokens.encode(wt, self.tokenizer)
        cache: dict[int, float] = {}  # wild-type position -> log p(its token | the rest)
        scores = np.zeros(len(variants))
        plan, size = [], 0
        for i, v in enumerate(variants):
            plan.append((i, *self._terms(wt, wt_tokens, v, context)))
            size += len(plan[-1][2]) + len(plan[-1][3])
            if size >= self.options.chunk or i == len(variants) - 1:
                self._round(wt_tokens, plan, cache, scores)
                plan, size = [], 0
        return scores

    def _terms(self, seq: str, wt: Tokens, v: Variant, context: int | None) -> tuple[Tokens, np.ndarray, np.ndarray]:
        """The mutant's tokens, and the positions whose terms are scored in the mutant and in the wild type."""
        mut = Tokens.encode(apply(v, seq), self.tokenizer)
        to_wt = match(wt, mut)
        matched_wt = np.zeros(len(wt.ids), dtype=bool)
        matched_wt[to_wt[to_wt >= 0]] = True
        mut_pos = selected(mut, changed_positions(mut, to_wt >= 0), context)
        wt_pos = selected(wt, changed_positions(wt, matched_wt), context)
        pairs = cancelled(wt, mut, to_wt, mut_pos, self.window) & np.isin(to_wt[mut_pos], wt_pos)
        return mut, mut_pos[~pairs], wt_pos[~np.isin(wt_pos, to_wt[mut_pos[pairs]])]

    def _round(self, wt: Tokens, plan: list, cache: dict[int, float], scores: np.ndarray) -> None:
        """One round of passes: the wild-type terms not cached yet and the mutant terms of `plan`."""
        todo = sorted({j for _, _, _, wt_pos in plan for j in wt_pos.tolist()} - cache.keys())
        seqs = [wt.ids] + [mut.ids for _, mut, _, _ in plan]
        requests = [_requests(0, wt.ids, np.array(todo, dtype=np.int64))]
        requests += [_requests(s + 1, mut.ids, pos) for s, (_, mut, pos, _) in enumerate(plan)]
        log_p = self.passes.log_probs(seqs, np.concatenate(requests))
        cache.update(zip(todo, log_p[: len(todo)].tolist(), strict=True))
        at = len(todo)
        for i, _, mut_pos, wt_pos in plan:
            scores[i] = log_p[at : at + len(mut_pos)].sum() - sum(cache[j] for j in wt_pos.tolist())
            at += len(mut_pos)


def _requests(seq: int, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(n, 5) requests: each position masked in its own window, its own token read."""
    return np.column_stack([np.full(len(positions), seq), positions, positions, positions, ids[positions]])


def parse_variants(wt: str, mutants) -> list[Variant]:
    """Mutants as strings (`A23C:G45T`) or `Variant`s, each checked against `wt` (ProtlmError naming it)."""
    if isinstance(mutants, str):
        raise ProtlmError("give a list of mutants, e.g. ['A23C', 'A23C:G45T'], not one string")
    out = []
    for m in mutants:
        try:
            v = parse_mutant(m) if isinstance(m, str) else tuple(m)
            check(v, wt)
        except ValueError as e:
            raise ProtlmError(f"mutant {str(m)[:60]!r}: {e}") from None
        out.append(v)
    return out
