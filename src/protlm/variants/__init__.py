"""Zero-shot variant effect scores from masked LMs, on ProteinGym's substitution files (docs/variants.md).

mutants.py (ProteinGym notation) -> assay.py (DMS files read and checked, scored tables written)
-> passes.py (batched forward passes over ProteinGym's windows) -> spans.py (which tokens a PLL masks, any
tokenizer) -> scorer.py (masked-marginal, wt-marginal, pll, span) -> metrics.py (ProteinGym's metrics)
-> run.py (`protlm variants score`) and benchmark.py (`protlm variants benchmark`).
An inference-level package: it imports neither `protlm.tasks` nor `protlm.train`.
"""

from protlm.variants.scorer import STRATEGIES, ScoreOptions, VariantScorer

__all__ = ["STRATEGIES", "ScoreOptions", "VariantScorer"]
